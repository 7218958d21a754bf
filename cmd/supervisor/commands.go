package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/fingerprint"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/supervisor"
)

func commands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "migrate",
			Usage: "create the worker's tables, columns and indexes (idempotent; keeps every row)",
			Action: withDatabase(creating, func(c *cli.Context, e *env) error {
				if err := e.store.Migrate(c.Context); err != nil {
					return err
				}
				fmt.Println("database migrated")
				return nil
			}),
		},
		{
			Name:  "enqueue",
			Usage: "insert jobs (and sample inputs) the way the ADE API does",
			Subcommands: []*cli.Command{
				enqueueConfigurationCmd(), enqueueDocumentCmd(), enqueueBuildCmd(), enqueueRunCmd(),
			},
		},
		{
			Name:  "status",
			Usage: "show job counts by status and the most recent jobs",
			Flags: []cli.Flag{&cli.IntFlag{Name: "limit", Value: 10, Usage: "how many recent jobs to list"},
				&cli.BoolFlag{Name: "json", Usage: "print one JSON document (fields in the README)"},
				&cli.StringFlag{Name: "workspace", Usage: "show the runs queued and running of this workspace `ID`"},
				&cli.BoolFlag{Name: "by-workspace", Usage: "show the runs queued and running per workspace, busiest first"}},
			Action: withStore(func(c *cli.Context, e *env) error {
				if c.IsSet("workspace") || c.Bool("by-workspace") {
					return printWorkspaces(c, e)
				}
				return printStatus(c, e)
			}),
		},
		cancelCmd(),
		pauseCmd(),
		resumeCmd(),
		retryCmd(),
		workersCmd(),
		gcCmd(),
		sandboxCmd(),
		{
			Name:      "job-spec",
			Usage:     "print the job spec the supervisor would send to jobrunner for a run or build",
			ArgsUsage: "RUN_OR_BUILD_ID",
			Before:    checkOneID,
			Action:    withStore(printJobSpec),
		},
		inspectCmd(),
		tailCmd(),
		healthCmd(),
		{
			Name:  "version",
			Usage: "print the version",
			Action: func(c *cli.Context) error {
				fmt.Println("supervisor", version)
				return nil
			},
		},
	}
}

func workspaceFlag() cli.Flag {
	return &cli.StringFlag{Name: "workspace", Required: true, Usage: "workspace `ID`"}
}

func configurationFlag() cli.Flag {
	return &cli.StringFlag{Name: "configuration", Required: true, Usage: "configuration `ID`"}
}

func enqueueConfigurationCmd() *cli.Command {
	return &cli.Command{
		Name:  "configuration",
		Usage: "copy a configuration package folder into the workspace and insert its row; prints the id",
		Flags: []cli.Flag{
			workspaceFlag(),
			&cli.StringFlag{Name: "from", Required: true, Usage: "configuration package `DIR` (with pyproject.toml)"},
			&cli.StringFlag{Name: "name", Usage: "display name (default: the folder name)"},
		},
		Action: withStore(func(c *cli.Context, e *env) error {
			ws, from := c.String("workspace"), c.String("from")
			id := store.NewID()
			lay := e.layout()
			dst, err := lay.ConfigDir(ws, id)
			if err != nil {
				return err
			}
			if err := copyTree(from, dst); err != nil {
				return fmt.Errorf("copy configuration package: %w", err)
			}
			digest, err := fingerprint.Config(dst)
			if err != nil {
				return err
			}
			name := c.String("name")
			if name == "" {
				name = filepath.Base(filepath.Clean(from))
			}
			if err := e.store.EnsureWorkspace(c.Context, ws, now()); err != nil {
				return err
			}
			return printID(id, e.store.InsertConfiguration(c.Context, store.NewConfiguration{ID: id, WorkspaceID: ws, DisplayName: name, ContentDigest: digest}, now()))
		}),
	}
}

func enqueueDocumentCmd() *cli.Command {
	return &cli.Command{
		Name:  "document",
		Usage: "copy a file into the workspace's documents and insert its row; prints the id",
		Flags: []cli.Flag{
			workspaceFlag(),
			&cli.StringFlag{Name: "file", Required: true, Usage: "the document `FILE`"},
		},
		Action: withStore(func(c *cli.Context, e *env) error {
			ws, file := c.String("workspace"), c.String("file")
			id := store.NewID()
			name := filepath.Base(file)
			storedURI := id + filepath.Ext(name)
			lay := e.layout()
			dst, err := lay.DocumentPath(ws, storedURI)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			sum, size, err := copyFile(file, dst)
			if err != nil {
				return fmt.Errorf("copy document: %w", err)
			}
			if err := e.store.EnsureWorkspace(c.Context, ws, now()); err != nil {
				return err
			}
			return printID(id, e.store.InsertDocument(c.Context, store.NewDocument{ID: id, WorkspaceID: ws, OriginalFilename: name,
				ContentType: mime.TypeByExtension(filepath.Ext(name)), StoredURI: storedURI, Sha256: sum, ByteSize: size}, now()))
		}),
	}
}

func enqueueBuildCmd() *cli.Command {
	return &cli.Command{
		Name:  "build",
		Usage: "queue a build of a configuration; prints the build id",
		Flags: []cli.Flag{
			workspaceFlag(), configurationFlag(),
			&cli.StringFlag{Name: "engine-spec", Usage: "engine pip spec or local path (default: ADE_ENGINE_SPEC)"},
		},
		Action: withStore(func(c *cli.Context, e *env) error {
			ws, cfgID := c.String("workspace"), c.String("configuration")
			lay := e.layout()
			dir, err := lay.ConfigDir(ws, cfgID)
			if err != nil {
				return err
			}
			digest, err := fingerprint.Config(dir)
			if err != nil {
				return fmt.Errorf("read configuration package %s: %w", dir, err)
			}
			spec := c.String("engine-spec")
			if spec == "" {
				spec = e.cfg.EngineSpec
			}
			id, created, err := e.store.EnqueueBuild(c.Context, store.NewBuild{WorkspaceID: ws, ConfigurationID: cfgID,
				Fingerprint: fingerprint.Build(spec, digest, e.cfg.Python), EngineSpec: spec, ConfigDigest: digest, MaxAttempts: e.cfg.MaxAttempts}, now())
			if err == nil && !created {
				fmt.Fprintln(os.Stderr, "a build with the same fingerprint exists; reusing it")
			}
			return printID(id, err)
		}),
	}
}

func enqueueRunCmd() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "queue a run of a document with a configuration; prints the run id",
		Flags: []cli.Flag{
			workspaceFlag(), configurationFlag(),
			&cli.StringFlag{Name: "document", Required: true, Usage: "input document `ID`"},
			&cli.StringFlag{Name: "build", Usage: "build `ID` (default: the configuration's newest build that has not failed)"},
			&cli.StringFlag{Name: "options", Usage: `run_options as JSON, e.g. '{"dry_run": true}'`},
		},
		Before: func(c *cli.Context) error {
			if opts := strings.TrimSpace(c.String("options")); opts != "" && !json.Valid([]byte(opts)) {
				return cliusage.Errorf(c, "invalid value %q for flag --options: want a JSON object", opts)
			}
			return nil
		},
		Action: withStore(func(c *cli.Context, e *env) error {
			opts := strings.TrimSpace(c.String("options"))
			return printID(e.store.EnqueueRun(c.Context, store.NewRun{WorkspaceID: c.String("workspace"),
				ConfigurationID: c.String("configuration"), DocumentID: c.String("document"), BuildID: c.String("build"),
				RunOptions: json.RawMessage(opts), MaxAttempts: e.cfg.MaxAttempts}, now()))
		}),
	}
}

// printID prints the id an enqueue command made, alone on stdout for
// scripts to capture, unless making it failed.
func printID(id string, err error) error {
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func printStatus(c *cli.Context, e *env) error {
	counts, err := e.store.Counts(c.Context)
	if err != nil {
		return err
	}
	jobs, err := e.store.RecentJobs(c.Context, c.Int("limit"))
	if err != nil {
		return err
	}
	pauses, err := e.store.Pauses(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeStatusJSON(os.Stdout, counts, jobs, pauses)
	}
	writePauses(os.Stdout, pauses)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tSTATUS\tCOUNT")
	for _, n := range counts {
		fmt.Fprintf(w, "%s\t%s\t%d\n", n.Kind, n.Status, n.Count)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "KIND\tID\tSTATUS\tATTEMPTS\tEXIT\tCREATED\tERROR")
	for _, j := range jobs {
		exit := "-"
		if j.ExitCode.Valid {
			exit = fmt.Sprint(j.ExitCode.Int64)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", j.Kind, j.ID, j.Status, j.AttemptCount, exit,
			j.CreatedAt.Format("2006-01-02 15:04:05"), oneLine(j.ErrorMessage.String, 100))
	}
	return w.Flush()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func printJobSpec(c *cli.Context, e *env) error {
	id, err := oneID(c)
	if err != nil {
		return err
	}
	p := &supervisor.Planner{Settings: e.cfg, Store: e.store}
	if run, err := e.store.GetRun(c.Context, id); err == nil {
		run.AttemptCount++ // the attempt a claim would start
		plan, err := p.PlanRun(c.Context, &run.ClaimedRun)
		if err != nil {
			return err
		}
		if plan.Reject != nil {
			return fmt.Errorf("run %s cannot start: %s", id, plan.Reject.Message)
		}
		return plan.Spec.Encode(os.Stdout)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	b, err := e.store.GetClaimableBuild(c.Context, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no run or build with id %s", id)
	}
	if err != nil {
		return err
	}
	b.AttemptCount++
	plan, err := p.PlanBuild(c.Context, b)
	if err != nil {
		return err
	}
	if plan.Reject != nil {
		return fmt.Errorf("build %s cannot start: %s", id, plan.Reject.Message)
	}
	return plan.Spec.Encode(os.Stdout)
}

// copyTree copies a configuration package folder, skipping caches. A
// symbolic link to a file is copied as the file it names (the test packages
// share one build backend that way); links to folders are left out.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if fingerprint.Skip(d.Name()) && rel != "." {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		_, _, err = copyFile(path, target)
		return err
	})
}

// copyFile copies src to dst and returns its sha256 and size.
func copyFile(src, dst string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), n, err
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/store"
)

// retryBatch is how many runs a bulk retry queues before it reports
// progress: each is its own short write, so the queue never waits on a
// long transaction.
const retryBatch = 100

// retryByIDCmd is `retry run ID...` or `retry build ID...`.
func retryByIDCmd(kind store.Kind, jsonFlag cli.Flag) *cli.Command {
	return &cli.Command{
		Name:      string(kind),
		Usage:     "retry " + string(kind) + "s by id",
		ArgsUsage: "ID...",
		Flags:     []cli.Flag{jsonFlag},
		Before:    checkIDs,
		Action:    withStore(func(c *cli.Context, e *env) error { return retryByID(c, e, kind) }),
	}
}

func retryCmd() *cli.Command {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print one JSON document (fields in the README)"}
	return &cli.Command{
		Name:  "retry",
		Usage: "put failed or cancelled runs and builds back in the queue as a new series of attempts",
		Description: `Attempts start again at 0, available_at is now (the database's clock) and the
error is cleared; the job keeps its id and history, and a run.retry or
build.retry event (who, when, the previous status and error) is appended to
its events file. Queued, running and succeeded jobs are refused. A run whose
build failed is refused until that build is retried (ready or queued again).`,
		Subcommands: []*cli.Command{
			retryByIDCmd(store.KindRun, jsonFlag),
			retryByIDCmd(store.KindBuild, jsonFlag),
			{
				Name:  "runs",
				Usage: "list the runs a filter selects and, with --yes, retry them",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "status", Value: "failed", Usage: "failed or cancelled"},
					&cli.StringFlag{Name: "workspace", Usage: "only runs of workspace `ID`"},
					&cli.StringFlag{Name: "configuration", Usage: "only runs of configuration `ID`"},
					&cli.DurationFlag{Name: "since", Usage: "only runs that ended within this `DURATION` (e.g. 2h), by the database's clock"},
					&cli.StringFlag{Name: "error-contains", Usage: "only runs whose error contains `TEXT` (any case)"},
					&cli.BoolFlag{Name: "dry-run", Usage: "list what would be retried; change nothing (the default without --yes)"},
					&cli.BoolFlag{Name: "yes", Usage: "retry the listed runs"},
					jsonFlag,
				},
				Before: func(c *cli.Context) error {
					if s := store.Status(c.String("status")); s != store.StatusFailed && s != store.StatusCancelled {
						return cliusage.Errorf(c, "invalid value %q for flag --status: want failed or cancelled", c.String("status"))
					}
					if c.Duration("since") < 0 {
						return cliusage.Errorf(c, "invalid value %s for flag --since: want a positive duration", c.Duration("since"))
					}
					if c.Bool("dry-run") && c.Bool("yes") {
						return cliusage.Errorf(c, "--dry-run and --yes contradict each other")
					}
					return nil
				},
				Action: withStore(retryBulk),
			},
		},
	}
}

func checkIDs(c *cli.Context) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") {
			return cliusage.Errorf(c, "flag %s must come before the ids", a)
		}
	}
	if !c.Args().Present() {
		return cliusage.Errorf(c, "want one or more job ids")
	}
	return nil
}

// retryDoc is one job in the output of retry --json.
type retryDoc struct {
	Kind          store.Kind   `json:"kind"`
	ID            string       `json:"id"`
	Status        store.Status `json:"status"` // before the retry
	WorkspaceID   string       `json:"workspace_id,omitempty"`
	Configuration string       `json:"configuration_id,omitempty"`
	PreviousError *string      `json:"previous_error"`
	EndedAt       *string      `json:"ended_at,omitempty"`
	Retried       bool         `json:"retried"`
	RetriedAt     *string      `json:"retried_at,omitempty"`
	Refused       string       `json:"refused,omitempty"` // why not, when not retried
	EventsWarning string       `json:"events_warning,omitempty"`
}

func docOf(t *store.RetryTarget) retryDoc {
	d := retryDoc{Kind: t.Kind, ID: t.ID, Status: t.Status, WorkspaceID: t.WorkspaceID, Configuration: t.ConfigurationID,
		PreviousError: t.ErrorMessage}
	if t.EndedAt.Valid {
		s := t.EndedAt.Time.UTC().Format(time.RFC3339Nano)
		d.EndedAt = &s
	}
	return d
}

// retryOne retries one job and appends its retry event; the document says
// what happened.
func retryOne(c *cli.Context, e *env, k store.Kind, id string) retryDoc {
	t, at, err := e.store.RetryJob(c.Context, k, id)
	if t == nil {
		return retryDoc{Kind: k, ID: id, Refused: err.Error()}
	}
	d := docOf(t)
	if err != nil {
		d.Refused = err.Error()
		return d
	}
	d.Retried = true
	s := at.UTC().Format(time.RFC3339Nano)
	d.RetriedAt = &s
	if err := appendRetryEvent(e, t, at); err != nil {
		d.EventsWarning = err.Error()
	}
	return d
}

// appendRetryEvent records the previous outcome in the job's events file:
// the file keeps the whole history, the row only the current series.
func appendRetryEvent(e *env, t *store.RetryTarget, at time.Time) error {
	lay := e.layout()
	var dir string
	var err error
	if t.Kind == store.KindRun {
		dir, err = lay.RunDir(t.WorkspaceID, t.ID)
	} else {
		dir, err = lay.BuildDir(t.WorkspaceID, t.ConfigurationID, t.ID)
	}
	if err != nil {
		return fmt.Errorf("events file of %s %s: %w", t.Kind, t.ID, err)
	}
	ctx := eventlog.Context{JobID: t.ID, WorkspaceID: t.WorkspaceID, ConfigurationID: t.ConfigurationID}
	if t.Kind == store.KindBuild {
		ctx.BuildID = t.ID
	} else if t.BuildID != nil {
		ctx.BuildID = *t.BuildID
	}
	root := e.cfg.RunsDir
	if t.Kind == store.KindBuild {
		root = e.cfg.VenvsDir
	}
	log, err := eventlog.Open(layout.EventsPath(dir), ctx, eventlog.Options{Root: root})
	if err != nil {
		return fmt.Errorf("append %s.retry to the events file: %w", t.Kind, err)
	}
	err = log.Emit("info", string(t.Kind)+".retry", fmt.Sprintf("%s queued again by %s (it was %s)", t.Kind, who(), t.Status),
		map[string]any{"retried_by": who(), "retried_at": at.UTC().Format(time.RFC3339Nano),
			"previous_status": string(t.Status), "previous_error": t.PreviousError(), "previous_attempts": t.AttemptCount})
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append %s.retry to %s: %w", t.Kind, log.Path(), err)
	}
	return nil
}

// who is the operator retrying: user@host.
func who() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func retryByID(c *cli.Context, e *env, k store.Kind) error {
	var docs []retryDoc
	refused := 0
	for _, id := range c.Args().Slice() {
		d := retryOne(c, e, k, id)
		docs = append(docs, d)
		if !d.Retried {
			refused++
		}
	}
	if c.Bool("json") {
		if err := writeJSON(map[string]any{"jobs": docs}); err != nil {
			return err
		}
	} else {
		for _, d := range docs {
			printRetried(d)
		}
	}
	if refused > 0 {
		return cli.Exit(fmt.Sprintf("supervisor: %d of %d %ss not retried", refused, len(docs), k), 1)
	}
	return nil
}

func printRetried(d retryDoc) {
	switch {
	case d.Retried:
		fmt.Printf("%s %s queued again (it was %s: %s)\n", d.Kind, d.ID, d.Status, oneLine(deref(d.PreviousError), 100))
	default:
		fmt.Fprintf(os.Stderr, "supervisor: not retried: %s\n", d.Refused)
	}
	if d.EventsWarning != "" {
		fmt.Fprintf(os.Stderr, "supervisor: warning: %s\n", d.EventsWarning)
	}
}

func writeJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// bulkDoc is the output of retry runs --json.
type bulkDoc struct {
	DryRun  bool       `json:"dry_run"`
	Runs    []retryDoc `json:"runs"`
	Retried int        `json:"retried"`
	Refused int        `json:"refused"`
}

func retryBulk(c *cli.Context, e *env) error {
	targets, err := e.store.RetryCandidates(c.Context, store.RetryFilter{Status: store.Status(c.String("status")),
		WorkspaceID: c.String("workspace"), ConfigurationID: c.String("configuration"), Since: c.Duration("since"),
		ErrorContains: c.String("error-contains")})
	if err != nil {
		return err
	}
	doc := bulkDoc{DryRun: !c.Bool("yes"), Runs: []retryDoc{}}
	for i := range targets {
		t := &targets[i]
		d := docOf(t)
		if err := t.Retryable(); err != nil {
			d.Refused = err.Error()
		} else if !doc.DryRun {
			d = retryOne(c, e, store.KindRun, t.ID)
			if (i+1)%retryBatch == 0 && !c.Bool("json") {
				fmt.Fprintf(os.Stderr, "supervisor: %d of %d runs handled\n", i+1, len(targets))
			}
		}
		if d.Retried {
			doc.Retried++
		} else if d.Refused != "" {
			doc.Refused++
		}
		doc.Runs = append(doc.Runs, d)
	}
	if c.Bool("json") {
		return writeJSON(doc)
	}
	return printBulk(doc)
}

func printBulk(doc bulkDoc) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACTION\tRUN\tSTATUS\tWORKSPACE\tCONFIGURATION\tENDED\tERROR")
	for _, d := range doc.Runs {
		action := "would retry"
		switch {
		case d.Refused != "":
			action = "refused"
		case d.Retried:
			action = "retried"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", action, d.ID, d.Status, d.WorkspaceID, d.Configuration,
			deref(d.EndedAt), oneLine(deref(d.PreviousError), 80))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, d := range doc.Runs {
		if d.Refused != "" {
			fmt.Fprintf(os.Stderr, "supervisor: refused: %s\n", d.Refused)
		}
		if d.EventsWarning != "" {
			fmt.Fprintf(os.Stderr, "supervisor: warning: %s\n", d.EventsWarning)
		}
	}
	if doc.DryRun {
		fmt.Printf("would retry %d runs (%d refused); add --yes to retry them\n", len(doc.Runs)-doc.Refused, doc.Refused)
		return nil
	}
	fmt.Printf("retried %d runs (%d refused)\n", doc.Retried, doc.Refused)
	return nil
}

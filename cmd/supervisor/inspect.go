package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/store"
)

// inspectEvents is how many of a job's last events inspect shows.
const inspectEvents = 10

func inspectCmd() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show one run or build: its row, why it is not running, its files and its last events",
		ArgsUsage: "RUN_OR_BUILD_ID",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON document (fields in the README)"}},
		Before:    checkOneID,
		Action: withStore(func(c *cli.Context, e *env) error {
			j, err := loadJob(c, e, "inspect")
			if err != nil {
				return err
			}
			now := time.Now()
			if j.DBNow.Valid { // the queue's one clock decides back-off
				now = j.DBNow.Time
			}
			doc := describe(j, e.layout(), now)
			if doc.Worker, err = claimWorker(c.Context, e.store, j); err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			return writeInspect(os.Stdout, doc)
		}),
	}
}

// loadJob reads the run or build named by the command's one argument.
func loadJob(c *cli.Context, e *env, command string) (*store.JobDetail, error) {
	id, err := oneID(c)
	if err != nil {
		return nil, err
	}
	j, err := e.store.Inspect(c.Context, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no run or build with id %q in this database (ADE_DATABASE_URL); list recent ids with 'supervisor status'", id)
	}
	return j, err
}

// checkOneID is the Before of a command taking one id: usage errors come
// before opening the database.
func checkOneID(c *cli.Context) error {
	_, err := oneID(c)
	return err
}

// oneID is the command's one argument, a run or build id, or a usage error.
// urfave/cli stops reading flags at the first argument, so a flag after the
// id is named as such.
func oneID(c *cli.Context) (string, error) {
	for _, a := range c.Args().Tail() {
		if strings.HasPrefix(a, "-") {
			return "", cliusage.Errorf(c, "flag %s must come before RUN_OR_BUILD_ID", a)
		}
	}
	if c.Args().Len() != 1 || c.Args().First() == "" {
		return "", cliusage.Errorf(c, "want exactly one argument, RUN_OR_BUILD_ID, got %d", c.Args().Len())
	}
	return c.Args().First(), nil
}

// inspectDoc is the output of `supervisor inspect --json`. Its field names
// are documented in the README and kept stable.
type inspectDoc struct {
	jobHead
	WorkspaceID     string             `json:"workspace_id"`
	ConfigurationID string             `json:"configuration_id"`
	MaxAttempts     int                `json:"max_attempts"`
	ClaimExpiresAt  *string            `json:"claim_expires_at"`
	Times           map[string]*string `json:"times"`
	Run             *runDoc            `json:"run,omitempty"`
	Build           *buildDoc          `json:"build,omitempty"`
	WhyNotRunning   *whyDoc            `json:"why_not_running"`
	Worker          *workerDoc         `json:"worker"` // the row of the supervisor holding it, when running
	Files           []fileDoc          `json:"files"`
	Events          eventsDoc          `json:"events"`
	now             time.Time
}

type runDoc struct {
	DocumentID       string  `json:"document_id"`
	DocumentFilename *string `json:"document_filename"`
	BuildID          *string `json:"build_id"`
	BuildStatus      *string `json:"build_status"`
	OutputPath       *string `json:"output_path"`
	RunOptions       *string `json:"run_options"`
}

type buildDoc struct {
	Fingerprint       *string `json:"fingerprint"`
	EngineSpec        *string `json:"engine_spec"`
	EngineVersion     *string `json:"engine_version"`
	PythonVersion     *string `json:"python_version"`
	PythonInterpreter *string `json:"python_interpreter"`
}

type whyDoc struct {
	Reason  string  `json:"reason"`
	Message string  `json:"message"`
	Until   *string `json:"until"`
}

// fileDoc is one of a job's files or folders. Error says why its path could
// not be made (an id that would leave its folder).
type fileDoc struct {
	Name   string `json:"name"`
	Path   string `json:"path,omitempty"`
	Exists bool   `json:"exists"`
	Error  string `json:"error,omitempty"`
}

type eventsDoc struct {
	Path  string           `json:"path,omitempty"`
	Error string           `json:"error,omitempty"` // why the last events could not be read
	Last  []eventlog.Entry `json:"last"`
}

// describe gathers what inspect shows about j.
func describe(j *store.JobDetail, lay layout.Layout, now time.Time) *inspectDoc {
	d := &inspectDoc{
		jobHead:     headOf(j.Kind, j.ID, j.Status, j.AttemptCount, j.ExitCode, j.ClaimedBy, j.ErrorMessage),
		WorkspaceID: j.WorkspaceID, ConfigurationID: j.ConfigurationID, MaxAttempts: j.MaxAttempts,
		ClaimExpiresAt: jsonTime(j.ClaimExpiresAt),
		Times: map[string]*string{"created_at": jsonTime(j.CreatedAt), "available_at": jsonTime(j.AvailableAt),
			"started_at": jsonTime(j.StartedAt)},
		now: now,
	}
	if j.Kind == store.KindRun {
		d.Times["completed_at"], d.Times["cancelled_at"] = jsonTime(j.EndedAt), jsonTime(j.CancelledAt)
		d.Run = &runDoc{DocumentID: j.DocumentID, DocumentFilename: nullString(j.DocumentFilename),
			BuildID: nullString(j.BuildID), BuildStatus: nullString(j.BuildStatus),
			OutputPath: nullString(j.OutputPath), RunOptions: nullString(j.RunOptions)}
	} else {
		d.Times["finished_at"] = jsonTime(j.EndedAt)
		d.Build = &buildDoc{Fingerprint: nullString(j.Fingerprint), EngineSpec: nullString(j.EngineSpec),
			EngineVersion: nullString(j.EngineVersion), PythonVersion: nullString(j.PythonVersion),
			PythonInterpreter: nullString(j.PythonInterpreter)}
	}
	if w := j.WhyNotRunning(now); w != nil {
		d.WhyNotRunning = &whyDoc{Reason: string(w.Reason), Message: w.Message}
		if !w.Until.IsZero() {
			d.WhyNotRunning.Until = jsonTime(store.Time{Time: w.Until, Valid: true})
		}
	}
	var events string
	d.Files, events = jobFiles(j, lay)
	d.Events = lastEvents(events, inspectEvents)
	return d
}

// jobFiles lists where a job's files are, and returns its events file ("" when
// its folder cannot be named).
func jobFiles(j *store.JobDetail, lay layout.Layout) ([]fileDoc, string) {
	var files []fileDoc
	add := func(name, path string, err error) { files = append(files, fileRef(name, path, err)) }
	var dir string
	var err error
	if j.Kind == store.KindRun {
		dir, err = lay.RunDir(j.WorkspaceID, j.ID)
		add("run folder", dir, err)
	} else {
		dir, err = lay.BuildDir(j.WorkspaceID, j.ConfigurationID, j.ID)
		add("build folder", dir, err)
	}
	events := ""
	if err == nil {
		events = layout.EventsPath(dir)
		add("events", events, nil)
	}
	if j.Kind == store.KindRun {
		files = append(files, runFiles(j, lay, dir, err)...)
	} else if err == nil {
		add("venv", layout.VenvDir(dir), nil)
	}
	cfgDir, cerr := lay.ConfigDir(j.WorkspaceID, j.ConfigurationID)
	add("configuration package", cfgDir, cerr)
	return files, events
}

// fileRef describes path; err is why there is no path.
func fileRef(name, path string, err error) fileDoc {
	if err != nil {
		return fileDoc{Name: name, Error: err.Error()}
	}
	_, serr := os.Stat(path)
	return fileDoc{Name: name, Path: path, Exists: serr == nil}
}

// runFiles are a run's input, output, document and build environment.
func runFiles(j *store.JobDetail, lay layout.Layout, runDir string, dirErr error) []fileDoc {
	var files []fileDoc
	add := func(name, path string, err error) { files = append(files, fileRef(name, path, err)) }
	if dirErr == nil {
		if j.DocumentFilename.Valid {
			p, err := layout.InputPath(runDir, j.DocumentFilename.String)
			add("input", p, err)
		}
		add("output folder", filepath.Join(runDir, layout.OutputName), nil)
		if out := j.OutputPath.String; j.OutputPath.Valid && out != "" {
			if !filepath.IsAbs(out) {
				out = filepath.Join(runDir, out)
			}
			add("output", out, nil)
		}
	}
	if j.DocumentStoredURI.Valid {
		p, err := lay.DocumentPath(j.WorkspaceID, j.DocumentStoredURI.String)
		add("document", p, err)
	} else {
		add("document", "", fmt.Errorf("document %s: no such row", j.DocumentID))
	}
	if j.BuildStatus.Valid {
		b, err := lay.BuildDir(j.BuildWorkspaceID.String, j.BuildConfigID.String, j.BuildID.String)
		if err == nil {
			b = layout.VenvDir(b)
		}
		add("venv", b, err)
	}
	return files
}

// lastEvents reads the last n events of the file at path, for people.
func lastEvents(path string, n int) eventsDoc {
	d := eventsDoc{Path: path, Last: []eventlog.Entry{}}
	if path == "" {
		return d
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return d
	}
	if err != nil {
		d.Error = err.Error()
		return d
	}
	defer f.Close()
	start, err := lastLinesOffset(f, n)
	if err == nil {
		_, err = f.Seek(start, io.SeekStart)
	}
	r := eventlog.NewLineReader(f, maxEventLine)
	for err == nil {
		var line []byte
		var dropped int64
		line, dropped, _, err = r.Next()
		if err == nil {
			e, _ := entryOf(line, dropped)
			d.Last = append(d.Last, e)
		}
	}
	if !errors.Is(err, io.EOF) {
		d.Error = err.Error()
	}
	return d
}

func nullString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func nullInt(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	return &n.Int64
}

// jsonTime is t in RFC 3339 UTC, or nil for NULL.
func jsonTime(t store.Time) *string {
	if !t.Valid {
		return nil
	}
	s := t.Time.UTC().Format(time.RFC3339Nano)
	return &s
}

// writeInspect prints the document for people.
func writeInspect(out io.Writer, d *inspectDoc) error {
	fmt.Fprintf(out, "%s %s: %s\n", d.Kind, d.ID, d.Status)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "  %s\t%s\n", k, orDash(v)) }
	row("attempts", fmt.Sprintf("%d of %d", d.AttemptCount, d.MaxAttempts))
	row("claimed by", deref(d.ClaimedBy))
	if wd := d.Worker; wd != nil {
		row("worker", fmt.Sprintf("%s on %s, pid %d, version %s, last seen %.1fs ago (%s%s)", wd.WorkerID, wd.Host, wd.PID,
			wd.Version, wd.SecondsSinceSeen, wd.State, map[bool]string{true: ", draining"}[wd.Draining]))
	}
	row("lease ends", leaseText(d))
	for _, k := range timeKeys(d.Kind) {
		row(strings.TrimSuffix(k, "_at"), humanTime(d.Times[k], d.now))
	}
	if d.ExitCode != nil {
		row("exit code", fmt.Sprint(*d.ExitCode))
	} else {
		row("exit code", "")
	}
	row("error", deref(d.ErrorMessage))
	row("workspace", d.WorkspaceID)
	row("configuration", d.ConfigurationID)
	if r := d.Run; r != nil {
		row("document", r.DocumentID+parenthesized(deref(r.DocumentFilename)))
		row("build", deref(r.BuildID)+parenthesized(deref(r.BuildStatus)))
		row("run options", deref(r.RunOptions))
	}
	if b := d.Build; b != nil {
		row("engine spec", deref(b.EngineSpec))
		row("versions", strings.TrimSpace(joinNonEmpty("engine "+deref(b.EngineVersion), "python "+deref(b.PythonVersion))))
	}
	if d.WhyNotRunning != nil {
		fmt.Fprintf(w, "\nwhy not running\t%s\n", d.WhyNotRunning.Message)
	}
	fmt.Fprintln(w, "\nfiles")
	for _, f := range d.Files {
		switch {
		case f.Error != "":
			fmt.Fprintf(w, "  %s\t(%s)\n", f.Name, f.Error)
		case f.Exists:
			fmt.Fprintf(w, "  %s\t%s\n", f.Name, f.Path)
		default:
			fmt.Fprintf(w, "  %s\t%s (missing)\n", f.Name, f.Path)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return writeLastEvents(out, d.ID, d.Events)
}

func writeLastEvents(out io.Writer, id string, ev eventsDoc) error {
	switch {
	case ev.Error != "":
		_, err := fmt.Fprintf(out, "\nlast events: cannot read %s: %s\n", ev.Path, ev.Error)
		return err
	case len(ev.Last) == 0:
		_, err := fmt.Fprintln(out, "\nlast events: none yet")
		return err
	}
	fmt.Fprintf(out, "\nlast %d events (all of them: supervisor tail %s)\n", len(ev.Last), id)
	for _, e := range ev.Last {
		if _, err := fmt.Fprintln(out, "  "+formatEntry(e, false)); err != nil {
			return err
		}
	}
	return nil
}

// timeKeys are the keys of inspectDoc.Times for a kind, in time order.
func timeKeys(kind store.Kind) []string {
	if kind == store.KindRun {
		return []string{"created_at", "available_at", "started_at", "completed_at", "cancelled_at"}
	}
	return []string{"created_at", "available_at", "started_at", "finished_at"}
}

// leaseText says when a running job's lease ends, and what an expired one means.
func leaseText(d *inspectDoc) string {
	if d.ClaimExpiresAt == nil {
		return ""
	}
	end, err := time.Parse(time.RFC3339Nano, *d.ClaimExpiresAt)
	if err != nil || d.Status != store.ActiveStatus(d.Kind) || end.After(d.now) {
		return humanTime(d.ClaimExpiresAt, d.now)
	}
	return humanTime(d.ClaimExpiresAt, d.now) + ": expired, the next cleanup re-queues or fails it"
}

// humanTime shows an RFC 3339 time as UTC with how far it is from now.
func humanTime(s *string, now time.Time) string {
	if s == nil {
		return ""
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return *s
	}
	text := t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	switch d := t.Sub(now).Round(time.Second); {
	case d > 0:
		return text + " (in " + d.String() + ")"
	case d < 0:
		return text + " (" + (-d).String() + " ago)"
	}
	return text + " (now)"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func parenthesized(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// joinNonEmpty joins "label value" parts whose value is not empty.
func joinNonEmpty(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if _, v, _ := strings.Cut(p, " "); v != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, ", ")
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// maxEventLine bounds one events-file line that tail and inspect read. Lines
// the worker writes stay below it (engine lines are cut at 4 MiB before JSON
// escaping, which at most sextuples them).
const maxEventLine = 32 << 20

// maxMessage is how much of a message a readable line shows.
const maxMessage = 2000

// Timing of tail --follow.
const (
	followPoll = 200 * time.Millisecond // how often it looks for new lines
	followRow  = time.Second            // how often it re-reads the job's row while the file is quiet
	// followGrace is how long a job may be finished in the database before
	// its events file is given up on: the terminal event is appended just
	// after the row is written, and jobs rejected before they started never
	// get one.
	followGrace = 5 * time.Second
)

func tailCmd() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "print a run's or build's events as readable lines; --follow until it ends",
		ArgsUsage: "RUN_OR_BUILD_ID",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new events until run.complete or build.complete"},
			&cli.BoolFlag{Name: "json", Usage: "print the NDJSON lines unchanged"},
			&cli.IntFlag{Name: "lines", Aliases: []string{"n"}, Usage: "start at the last `N` lines (0: the whole file)"},
		},
		Before: func(c *cli.Context) error {
			if c.Int("lines") < 0 {
				return cliusage.Errorf(c, "invalid value %d for flag --lines: want 0 (the whole file) or more", c.Int("lines"))
			}
			return checkOneID(c)
		},
		Action: withStore(func(c *cli.Context, e *env) error {
			j, err := loadJob(c, e, "tail")
			if err != nil {
				return err
			}
			files, path := jobFiles(j, e.layout())
			if path == "" {
				return fmt.Errorf("%s %s has no events file: %s", j.Kind, j.ID, files[0].Error)
			}
			t := &tailer{reread: e.store.Inspect, job: j, path: path, follow: c.Bool("follow"), lines: c.Int("lines"),
				out: newLinePrinter(os.Stdout, c.Bool("json"))}
			return t.run(c.Context)
		}),
	}
}

// tailer prints one job's events file.
type tailer struct {
	reread func(ctx context.Context, id string) (*store.JobDetail, error) // store.Inspect
	job    *store.JobDetail
	path   string
	follow bool
	lines  int
	out    *linePrinter
}

func (t *tailer) run(ctx context.Context) error {
	f, err := t.open(ctx)
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	if t.lines > 0 {
		start, err := lastLinesOffset(f, t.lines)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.path, err)
		}
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return err
		}
	}
	return t.copy(ctx, eventlog.NewLineReader(f, maxEventLine))
}

// copy prints lines until the end of the file, or with --follow until the
// job's terminal event (or its row has been terminal for followGrace).
func (t *tailer) copy(ctx context.Context, r *eventlog.LineReader) error {
	terminal := string(t.job.Kind) + ".complete"
	var checked, endedAt time.Time
	for {
		line, dropped, _, err := r.Next()
		if err == nil {
			name := t.out.print(line, dropped)
			if t.follow && name == terminal && t.ended(ctx) {
				return t.out.flush()
			}
			continue
		}
		if ferr := t.out.flush(); ferr != nil {
			return ferr
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", t.path, err)
		}
		if !t.follow {
			return nil
		}
		if time.Since(checked) >= followRow {
			checked = time.Now()
			if !t.ended(ctx) {
				endedAt = time.Time{}
			} else if endedAt.IsZero() {
				endedAt = checked
			} else if time.Since(endedAt) >= followGrace {
				fmt.Fprintf(os.Stderr, "supervisor: %s %s is %s; its events file has no %s\n", t.job.Kind, t.job.ID, t.job.Status, terminal)
				return nil
			}
		}
		if err := tick.Sleep(ctx, followPoll); err != nil {
			return err
		}
	}
}

// open opens the events file. Without --follow a missing file is reported
// and is an error only for a job that has ended. With --follow it waits for
// the file while the job may still write it; f is nil when it never came.
func (t *tailer) open(ctx context.Context) (*os.File, error) {
	var endedAt time.Time
	waiting := false
	for {
		f, err := os.Open(t.path)
		if !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		ended := t.ended(ctx)
		switch {
		case !t.follow && ended:
			return nil, fmt.Errorf("%s %s is %s and has no events file at %s (removed, or the job never started)", t.job.Kind, t.job.ID, t.job.Status, t.path)
		case !t.follow:
			fmt.Fprintf(os.Stderr, "supervisor: %s %s is %s and has no events yet; they will be in %s\n", t.job.Kind, t.job.ID, t.job.Status, t.path)
			return nil, nil
		case ended && endedAt.IsZero():
			endedAt = time.Now()
		case ended && time.Since(endedAt) >= followGrace:
			fmt.Fprintf(os.Stderr, "supervisor: %s %s is %s; it wrote no events file at %s\n", t.job.Kind, t.job.ID, t.job.Status, t.path)
			return nil, nil
		case !waiting:
			waiting = true
			fmt.Fprintf(os.Stderr, "supervisor: waiting for %s (%s %s is %s)\n", t.path, t.job.Kind, t.job.ID, t.job.Status)
		}
		if err := tick.Sleep(ctx, followPoll); err != nil {
			return nil, err
		}
	}
}

// ended re-reads the job's row and reports whether it is terminal. A read
// error counts as "not yet": following survives a database hiccup.
func (t *tailer) ended(ctx context.Context) bool {
	j, err := t.reread(ctx, t.job.ID)
	if err != nil {
		return false
	}
	t.job = j
	return j.Status.Final()
}

// lastLinesOffset returns the offset of the n-th last whole line of f (0
// when f has fewer lines). It reads f once, keeping only offsets.
func lastLinesOffset(f io.ReadSeeker, n int) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	ring := make([]int64, n)
	count := 0
	r := eventlog.NewLineReader(f, maxEventLine)
	for {
		_, _, off, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		ring[count%n] = off
		count++
	}
	if count < n {
		return 0, nil
	}
	return ring[count%n], nil
}

// linePrinter writes events-file lines: unchanged (--json) or readable.
type linePrinter struct {
	w     *bufio.Writer
	json  bool
	color bool
}

func newLinePrinter(f *os.File, jsonOut bool) *linePrinter {
	return &linePrinter{w: bufio.NewWriter(f), json: jsonOut, color: !jsonOut && colorTerminal(f)}
}

// print writes one line and returns its event name ("" when it has none).
func (p *linePrinter) print(line []byte, dropped int64) string {
	e, ok := entryOf(line, dropped)
	switch {
	case p.json && dropped > 0:
		fmt.Fprintf(os.Stderr, "supervisor: skipping a line of %d bytes: longer than the %d MiB tail reads\n",
			int64(len(line))+dropped, maxEventLine>>20)
	case p.json:
		p.w.Write(line)
		p.w.WriteByte('\n')
	default:
		p.w.WriteString(formatEntry(e, p.color))
		p.w.WriteByte('\n')
	}
	if !ok {
		return ""
	}
	return e.Event
}

func (p *linePrinter) flush() error { return p.w.Flush() }

// entryOf reads a line for people; a line that is not an event (ok false)
// is shown as its text.
func entryOf(line []byte, dropped int64) (e eventlog.Entry, ok bool) {
	if dropped == 0 {
		if e, ok := eventlog.ParseEntry(line); ok {
			return e, true
		}
	}
	msg := string(line)
	if dropped > 0 {
		msg = clip(msg, maxMessage) + " …[" + strconv.FormatInt(dropped+int64(len(line)), 10) + "-byte line cut]"
	}
	return eventlog.Entry{Event: "(not an event)", Message: msg}, false
}

// colorTerminal reports whether f is a terminal that wants colours.
func colorTerminal(f *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ANSI colours of formatEntry.
const (
	ansiReset  = "\x1b[0m"
	ansiDim    = "\x1b[2m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// formatEntry renders one event on one line: time, level, event, message,
// error and key fields. Colours only when color is set.
func formatEntry(e eventlog.Entry, color bool) string {
	paint := func(code, s string) string {
		if !color || s == "" {
			return s
		}
		return code + s + ansiReset
	}
	level := strings.ToUpper(e.Level)
	var levelColor string
	switch level {
	case "ERROR", "CRITICAL", "FATAL":
		levelColor = ansiRed
	case "WARNING", "WARN":
		levelColor = ansiYellow
	case "DEBUG":
		levelColor = ansiDim
	}
	var b strings.Builder
	b.WriteString(paint(ansiDim, fmt.Sprintf("%-23s", shortTime(e.Timestamp))))
	b.WriteString(" " + paint(levelColor, fmt.Sprintf("%-7s", orDash(level))))
	b.WriteString(" " + paint(ansiCyan+ansiBold, fmt.Sprintf("%-20s", e.Event)))
	if e.Message != "" {
		b.WriteString(" " + oneLineText(e.Message))
	}
	if e.Error != "" {
		b.WriteString(" " + paint(ansiRed, "error="+quoteIfNeeded(oneLineText(e.Error))))
	}
	for _, f := range e.Fields {
		b.WriteString(" " + paint(ansiDim, f.Key+"=") + quoteIfNeeded(oneLineText(f.Value)))
	}
	return strings.TrimRight(b.String(), " ")
}

// shortTime shows an RFC 3339 timestamp as "2006-01-02 15:04:05.000" UTC.
func shortTime(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

// oneLineText keeps a message on one line and at most maxMessage bytes.
func oneLineText(s string) string {
	s = strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
	return clip(s, maxMessage)
}

// clip cuts s to at most n bytes on a UTF-8 boundary, saying how much it cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[" + strconv.Itoa(len(s)-cut) + " more bytes]"
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\"=") {
		return strconv.Quote(s)
	}
	return s
}

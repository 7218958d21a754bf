package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/store"
)

func TestFormatEntry(t *testing.T) {
	complete := eventlog.Entry{Timestamp: "2026-01-02T03:04:05.678901Z", Level: "info", Event: "run.complete",
		Message: "Run failed", Fields: eventlog.Fields{{Key: "status", Value: "failed"}, {Key: "exit_code", Value: "1"},
			{Key: "error", Value: "Engine exited with status 1"}}}
	tests := []struct {
		name  string
		entry eventlog.Entry
		color bool
		want  string
	}{
		{"plain", complete, false,
			`2026-01-02 03:04:05.678 INFO    run.complete         Run failed status=failed exit_code=1 error="Engine exited with status 1"`},
		{"multi-line message stays on one line", eventlog.Entry{Timestamp: "2026-01-02T03:04:05Z", Level: "error",
			Event: "console.line", Message: "Traceback:\n  boom\r\n", Fields: eventlog.Fields{{Key: "stream", Value: "stderr"}}}, false,
			`2026-01-02 03:04:05.000 ERROR   console.line         Traceback:\n  boom\n stream=stderr`},
		{"envelope error, odd timestamp", eventlog.Entry{Timestamp: "yesterday", Level: "warning", Event: "x", Error: "bad"}, false,
			`yesterday               WARNING x                    error=bad`},
		{"not an event", eventlog.Entry{Event: "(not an event)", Message: "plain text"}, false,
			`                        -       (not an event)       plain text`},
		{"colour", eventlog.Entry{Timestamp: "2026-01-02T03:04:05Z", Level: "error", Event: "e", Message: "m"}, true,
			"\x1b[2m2026-01-02 03:04:05.000\x1b[0m \x1b[31mERROR  \x1b[0m \x1b[36m\x1b[1me                   \x1b[0m m"},
	}
	for _, tt := range tests {
		if got := formatEntry(tt.entry, tt.color); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
	long := formatEntry(eventlog.Entry{Event: "x", Message: strings.Repeat("é", maxMessage)}, false)
	if !strings.Contains(long, "…[2000 more bytes]") || strings.Count(long, "é") != maxMessage/2 {
		t.Errorf("a long message is not cut on a rune boundary with a note: %q", long[len(long)-40:])
	}
}

func TestEntryOf(t *testing.T) {
	if e, ok := entryOf([]byte(`{"event":"run.start","level":"info"}`), 0); !ok || e.Event != "run.start" {
		t.Errorf("event line: %+v %v", e, ok)
	}
	if e, ok := entryOf([]byte(`{"event":"run.st`), 40); ok || !strings.HasSuffix(e.Message, "…[56-byte line cut]") {
		t.Errorf("cut line: %+v %v, want its text with the full length", e, ok)
	}
	if e, ok := entryOf([]byte(`garbage`), 0); ok || e.Message != "garbage" {
		t.Errorf("garbage: %+v %v", e, ok)
	}
}

func TestLastLinesOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(path, []byte("a\nbb\nccc\npartial"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for n, want := range map[int]int64{1: 5, 2: 2, 3: 0, 10: 0} {
		if got, err := lastLinesOffset(f, n); err != nil || got != want {
			t.Errorf("lastLinesOffset(%d) = %d, %v; want %d", n, got, err, want)
		}
	}
	d := lastEvents(path, 2)
	if d.Error != "" || len(d.Last) != 2 || d.Last[0].Message != "bb" || d.Last[1].Message != "ccc" {
		t.Errorf("lastEvents = %+v, want bb and ccc (the partial line held back)", d)
	}
}

func TestLinePrinterJSONPassesLinesThrough(t *testing.T) {
	var buf bytes.Buffer
	p := &linePrinter{json: true, w: bufio.NewWriter(&buf)}
	line := `{"event":"run.complete",  "data":{"status":"succeeded"}}`
	if name := p.print([]byte(line), 0); name != "run.complete" {
		t.Errorf("event name = %q", name)
	}
	p.print([]byte("not json"), 0)
	p.flush()
	if got := buf.String(); got != line+"\nnot json\n" {
		t.Errorf("json output = %q", got)
	}
}

func TestInspectText(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	at := func(d time.Duration) store.Time { return store.Time{Time: now.Add(d), Valid: true} }
	j := &store.JobDetail{Kind: store.KindRun, ID: "r1", WorkspaceID: "ws", ConfigurationID: "c1", Status: "queued",
		AttemptCount: 1, MaxAttempts: 3, CreatedAt: at(-time.Hour), AvailableAt: at(90 * time.Second), DocumentID: "d1"}
	j.BuildID.String, j.BuildID.Valid = "b1", true
	j.BuildStatus.String, j.BuildStatus.Valid = "ready", true
	j.ErrorMessage.String, j.ErrorMessage.Valid = "Run lease expired", true
	d := describe(j, testLayout(t), now)
	var out bytes.Buffer
	if err := writeInspect(&out, d); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"run r1: queued", "1 of 3", "2026-01-02 03:01:30.000 UTC (in 1m30s)",
		"why not running  in backoff until 2026-01-02T03:01:30Z (in 1m30s)", "Run lease expired",
		"b1 (ready)", "(document d1: no such row)", "last events: none yet"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect text lacks %q:\n%s", want, out.String())
		}
	}
	js, _ := json.Marshal(d)
	if !strings.Contains(string(js), `"why_not_running":{"reason":"backoff"`) || !strings.Contains(string(js), `"until":"2026-01-02T03:01:30Z"`) {
		t.Errorf("inspect JSON = %s", js)
	}
}

func testLayout(t *testing.T) layout.Layout {
	dir := t.TempDir()
	return layout.Layout{Configs: dir, Documents: dir, Runs: dir, Venvs: dir}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTailFollow: --follow waits for the file, goes on past a terminal event
// the row does not confirm (an earlier attempt's), and exits at the one that
// comes once the row is terminal, printing whole lines only.
func TestTailFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "events.ndjson")
	var mu sync.Mutex
	status := store.StatusQueued
	setStatus := func(s store.Status) { mu.Lock(); status = s; mu.Unlock() }
	reread := func(_ context.Context, id string) (*store.JobDetail, error) {
		mu.Lock()
		defer mu.Unlock()
		return &store.JobDetail{Kind: store.KindRun, ID: id, Status: status}, nil
	}
	var out syncBuffer
	tl := &tailer{reread: reread, job: &store.JobDetail{Kind: store.KindRun, ID: "r1", Status: "queued"}, path: path,
		follow: true, out: &linePrinter{json: true, w: bufio.NewWriter(&out)}}
	done := make(chan error, 1)
	go func() { done <- tl.run(context.Background()) }()

	old := `{"event":"run.complete","data":{"status":"failed"}}` + "\n"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	setStatus("running")
	f.WriteString(old)
	waitUntil(t, func() bool { return out.String() == old })
	select {
	case err := <-done:
		t.Fatalf("tail stopped at a terminal event of a running job: %v", err)
	default:
	}
	f.WriteString(`{"event":"run.complete","data":{"sta`)
	setStatus("succeeded")
	f.WriteString(`tus":"succeeded"}}` + "\n")
	select {
	case err := <-done:
		want := old + `{"event":"run.complete","data":{"status":"succeeded"}}` + "\n"
		if err != nil || out.String() != want {
			t.Errorf("tail --follow: err %v, output %q; want %q", err, out.String(), want)
		}
	case <-time.After(time.Minute):
		t.Fatalf("tail --follow did not stop at run.complete; output %q", out.String())
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
	}
}

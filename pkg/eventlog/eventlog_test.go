package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ade-org/ade-worker/test/eventfile"
)

var testCtx = Context{JobID: "job-1", WorkspaceID: "ws-1", ConfigurationID: "cfg-1"}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// openLog opens a Log in a fresh folder and closes it when the test ends.
func openLog(t *testing.T, c Context, opts Options) *Log {
	t.Helper()
	l, err := Open(filepath.Join(t.TempDir(), "logs", "events.ndjson"), c, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// readEvents closes l and returns its events, failing on any invalid line.
func readEvents(t *testing.T, l *Log) []map[string]any {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertValidNDJSON(t, l.Path())
	events, err := eventfile.ReadAll(l.Path())
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	return events
}

// assertValidNDJSON checks that every line of the file is valid UTF-8 and one
// JSON object, and that the file ends with a newline.
func assertValidNDJSON(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		return
	}
	if raw[len(raw)-1] != '\n' {
		t.Fatalf("file does not end with a newline")
	}
	for i, line := range bytes.Split(raw[:len(raw)-1], []byte{'\n'}) {
		if !utf8.Valid(line) || !json.Valid(line) || line[0] != '{' {
			t.Fatalf("line %d is not a valid JSON object: %.200q", i+1, line)
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			t.Fatalf("line %d holds a raw carriage return: %.200q", i+1, line)
		}
	}
}

// assertEnvelope checks the members every line must have.
func assertEnvelope(t *testing.T, ev map[string]any) {
	t.Helper()
	for _, k := range []string{"event_id", "engine_run_id", "timestamp", "level", "event", "message"} {
		if _, ok := ev[k].(string); !ok {
			t.Errorf("%s = %#v, want a string", k, ev[k])
		}
	}
	if _, ok := ev["data"].(map[string]any); !ok {
		t.Errorf("data = %#v, want an object", ev["data"])
	}
}

func TestEmit(t *testing.T) {
	l := openLog(t, testCtx, Options{})
	data := map[string]any{"status": "succeeded", "exit_code": 0, "jobId": "engine-says"}
	if err := l.Emit("", "run.complete", "Run succeeded", data); err != nil {
		t.Fatal(err)
	}
	if err := l.Emit("warning", "run.engine.start", "", nil); err != nil {
		t.Fatal(err)
	}
	errInfo := map[string]any{"type": "Timeout", "message": "took too long"}
	if err := l.Append(Event{Level: "error", Event: "run.complete", Data: map[string]any{"status": "failed"}, Error: errInfo}); err != nil {
		t.Fatal(err)
	}
	if len(data) != 3 {
		t.Errorf("Emit modified the caller's data: %v", data)
	}
	events := readEvents(t, l)
	if len(events) != 3 {
		t.Fatalf("got %d events, want 3", len(events))
	}
	for _, ev := range events {
		assertEnvelope(t, ev)
		if !uuidV4.MatchString(ev["event_id"].(string)) {
			t.Errorf("event_id %q is not a UUID v4", ev["event_id"])
		}
		if ev["engine_run_id"] != "job-1" {
			t.Errorf("engine_run_id = %v, want job-1", ev["engine_run_id"])
		}
		ts, err := time.Parse(time.RFC3339Nano, ev["timestamp"].(string))
		if err != nil || !strings.HasSuffix(ev["timestamp"].(string), "Z") || !strings.Contains(ev["timestamp"].(string), ".") {
			t.Errorf("timestamp %q is not RFC 3339 UTC with fraction (%v)", ev["timestamp"], err)
		}
		if time.Since(ts) > time.Minute || time.Since(ts) < 0 {
			t.Errorf("timestamp %v is not now", ts)
		}
	}
	want := []map[string]any{
		{"level": "info", "event": "run.complete", "message": "Run succeeded",
			"data": map[string]any{"status": "succeeded", "exit_code": 0.0, "jobId": "engine-says", "workspaceId": "ws-1", "configurationId": "cfg-1"}},
		{"level": "warning", "event": "run.engine.start", "message": "",
			"data": map[string]any{"jobId": "job-1", "workspaceId": "ws-1", "configurationId": "cfg-1"}},
		{"level": "error", "event": "run.complete", "message": "",
			"data":  map[string]any{"status": "failed", "jobId": "job-1", "workspaceId": "ws-1", "configurationId": "cfg-1"},
			"error": map[string]any{"type": "Timeout", "message": "took too long"}},
	}
	for i, w := range want {
		for k, v := range w {
			if !reflect.DeepEqual(events[i][k], v) {
				t.Errorf("event %d %s = %#v, want %#v", i, k, events[i][k], v)
			}
		}
		if _, ok := events[i]["error"]; ok != (w["error"] != nil) {
			t.Errorf("event %d: error present = %v", i, ok)
		}
	}
}

func TestEmitErrors(t *testing.T) {
	l := openLog(t, testCtx, Options{})
	tests := []struct {
		name string
		e    Event
	}{
		{"empty event name", Event{Message: "x"}},
		{"data that cannot be encoded", Event{Event: "x", Data: map[string]any{"ch": make(chan int)}}},
		{"error that cannot be encoded", Event{Event: "x", Error: func() {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.Append(tt.e); err == nil {
				t.Fatal("Append succeeded, want an error")
			}
		})
	}
	if events := readEvents(t, l); len(events) != 0 {
		t.Errorf("failed appends wrote %d lines", len(events))
	}
}

func TestContext(t *testing.T) {
	tests := []struct {
		name      string
		ctx       Context
		wantRunID string
		wantData  map[string]any
	}{
		{"all ids", Context{JobID: "j", WorkspaceID: "w", BuildID: "b", ConfigurationID: "c", EngineRunID: "r"}, "r",
			map[string]any{"jobId": "j", "workspaceId": "w", "buildId": "b", "configurationId": "c"}},
		{"empty ids skipped, run id defaults to job", Context{JobID: "j"}, "j", map[string]any{"jobId": "j"}},
		{"nothing known", Context{}, "", map[string]any{}},
		{"ids needing escapes", Context{JobID: "a\"b\\c\n"}, "a\"b\\c\n", map[string]any{"jobId": "a\"b\\c\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openLog(t, tt.ctx, Options{})
			if err := l.Emit("info", "build.start", "", nil); err != nil {
				t.Fatal(err)
			}
			if err := l.Pipe(strings.NewReader("plain\n{\"event\":\"engine.x\"}\n"), "run", "stdout", nil); err != nil {
				t.Fatal(err)
			}
			events := readEvents(t, l)
			if len(events) != 3 {
				t.Fatalf("got %d events, want 3", len(events))
			}
			for i, ev := range events {
				if ev["engine_run_id"] != tt.wantRunID {
					t.Errorf("event %d engine_run_id = %v, want %q", i, ev["engine_run_id"], tt.wantRunID)
				}
				data := ev["data"].(map[string]any)
				for k, v := range tt.wantData {
					if data[k] != v {
						t.Errorf("event %d data.%s = %v, want %v", i, k, data[k], v)
					}
				}
				for _, k := range []string{"jobId", "workspaceId", "buildId", "configurationId"} {
					if _, ok := tt.wantData[k]; !ok {
						if _, has := data[k]; has {
							t.Errorf("event %d data.%s present for an empty id", i, k)
						}
					}
				}
			}
		})
	}
}

func TestOpen(t *testing.T) {
	t.Run("creates parent folders", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a", "b", "events.ndjson")
		l, err := Open(path, testCtx, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.Path() != path {
			t.Errorf("Path() = %q, want %q", l.Path(), path)
		}
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() {
			t.Fatalf("events file not created: %v", err)
		}
		if st.Mode().Perm()&^0o644 != 0 {
			t.Errorf("file mode %v has more than 0644", st.Mode().Perm())
		}
	})
	t.Run("creates parent folders under its root", func(t *testing.T) {
		root := t.TempDir()
		path := filepath.Join(root, "run", "logs", "events.ndjson")
		for range 2 { // missing, then there
			l, err := Open(path, testCtx, Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Emit("info", "e", "", nil); err != nil {
				t.Fatal(err)
			}
			l.Close()
		}
		raw, err := os.ReadFile(path)
		if err != nil || strings.Count(string(raw), "\n") != 2 {
			t.Fatalf("events file = %q, %v; want two lines", raw, err)
		}
	})
	t.Run("appends and cuts a partial last line", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "events.ndjson")
		if err := os.WriteFile(path, []byte("{\"event\":\"old\"}\n{\"event\":\"cut"), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(path, testCtx, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Emit("info", "new", "", nil); err != nil {
			t.Fatal(err)
		}
		l.Close()
		raw, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		if len(lines) != 2 || lines[0] != `{"event":"old"}` || !json.Valid([]byte(lines[1])) {
			t.Fatalf("file = %q", raw)
		}
	})
	t.Run("rejects negative maxLineBytes", func(t *testing.T) {
		if _, err := Open(filepath.Join(t.TempDir(), "e"), testCtx, Options{maxLineBytes: -1}); err == nil {
			t.Fatal("Open succeeded")
		}
	})
	t.Run("fails when the folder cannot be made", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		if _, err := Open(filepath.Join(file, "events.ndjson"), testCtx, Options{}); err == nil {
			t.Fatal("Open succeeded")
		}
	})
}

func TestCloseTwice(t *testing.T) {
	l := openLog(t, testCtx, Options{})
	if err := l.Emit("info", "a", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Emit("info", "b", "", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Emit after Close = %v, want ErrClosed", err)
	}
	if err := l.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
	// A Pipe after Close still drains its reader and reports ErrClosed.
	r := strings.NewReader(strings.Repeat("line\n", 1000))
	if err := l.Pipe(r, "run", "stdout", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Pipe after Close = %v, want ErrClosed", err)
	}
	if r.Len() != 0 {
		t.Errorf("Pipe left %d bytes unread", r.Len())
	}
	events, err := eventfile.ReadAll(l.Path())
	if err != nil || len(events) != 1 {
		t.Fatalf("ReadAll = %d events, %v; want 1", len(events), err)
	}
}

func TestConcurrentPipeAndEmit(t *testing.T) {
	l := openLog(t, testCtx, Options{})
	const lines = 5000
	pad := strings.Repeat("p", 300)
	feed := func(w *os.File, kind string) {
		defer w.Close()
		for i := range lines {
			var s string
			if i%2 == 0 {
				s = kind + "-" + itoa(i) + "-" + pad + "\n"
			} else {
				s = `{"event":"engine.` + kind + `","message":"` + itoa(i) + `","data":{"pad":"` + pad + `"}}` + "\n"
			}
			if _, err := w.WriteString(s); err != nil {
				t.Error(err)
				return
			}
		}
	}
	var wg sync.WaitGroup
	var counts sync.Map
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { feed(w, stream) })
		wg.Go(func() {
			defer r.Close()
			n := 0
			if err := l.Pipe(r, "run", stream, func(string, json.RawMessage) { n++ }); err != nil {
				t.Error(err)
			}
			counts.Store(stream, n)
		})
	}
	wg.Go(func() {
		for i := range lines {
			if err := l.Emit("info", "run.progress", itoa(i), map[string]any{"pad": pad}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	events := readEvents(t, l)
	if len(events) != 3*lines {
		t.Fatalf("got %d events, want %d", len(events), 3*lines)
	}
	perKind := map[string]int{}
	for _, ev := range events {
		assertEnvelope(t, ev)
		name := ev["event"].(string)
		if name == "console.line" {
			msg := ev["message"].(string)
			stream := ev["data"].(map[string]any)["stream"].(string)
			if !strings.HasPrefix(msg, stream+"-") || !strings.HasSuffix(msg, pad) {
				t.Fatalf("console line mixed up: %q", msg)
			}
			name += "." + stream
		}
		perKind[name]++
	}
	for _, k := range []string{"console.line.stdout", "console.line.stderr", "engine.stdout", "engine.stderr"} {
		if perKind[k] != lines/2 {
			t.Errorf("%s: %d lines, want %d", k, perKind[k], lines/2)
		}
	}
	if perKind["run.progress"] != lines {
		t.Errorf("run.progress: %d lines, want %d", perKind["run.progress"], lines)
	}
	for _, s := range []string{"stdout", "stderr"} {
		if n, _ := counts.Load(s); n != lines/2 {
			t.Errorf("onEvent for %s called %v times, want %d", s, n, lines/2)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

package eventlog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ade-org/ade-worker/pkg/eventlog"
)

type readLine struct {
	text    string
	dropped int64
	offset  int64
}

// readAvailable returns the lines Next gives until io.EOF.
func readAvailable(t *testing.T, r *eventlog.LineReader) []readLine {
	t.Helper()
	var out []readLine
	for {
		line, dropped, off, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, readLine{string(line), dropped, off})
	}
}

// TestLineReaderFollowsAGrowingFile: a line the writer has not finished is
// held back until its newline arrives, and then returned whole.
func TestLineReaderFollowsAGrowingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := eventlog.NewLineReader(f, 16)
	write := func(s string) {
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		write string
		want  []readLine
	}{
		{"", nil},
		{`{"a":1}` + "\n" + `{"b":`, []readLine{{`{"a":1}`, 0, 0}}},
		{`2`, nil},
		{"}\r", nil},
		{"\n", []readLine{{`{"b":2}`, 0, 8}}},
		{strings.Repeat("x", 40), nil},
		{"yz\n\n", []readLine{{strings.Repeat("x", 16), 26, 17}, {"", 0, 60}}},
	}
	for i, s := range steps {
		write(s.write)
		if got := readAvailable(t, r); !reflect.DeepEqual(got, s.want) {
			t.Errorf("step %d (wrote %q): lines %+v, want %+v", i, s.write, got, s.want)
		}
	}
	if r.Offset() != 61 {
		t.Errorf("offset = %d, want 61", r.Offset())
	}
}

// TestLineReaderKeepsMemoryBounded: a 20 MB line with a small limit is cut
// and counted, and the next line is intact.
func TestLineReaderKeepsMemoryBounded(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 20<<20)
	in := append(append(big, '\n'), "next\n"...)
	r := eventlog.NewLineReader(bytes.NewReader(in), 1024)
	got := readAvailable(t, r)
	want := []readLine{{strings.Repeat("a", 1024), int64(len(big) - 1024), 0}, {"next", 0, int64(len(big) + 1)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %d lines (%v dropped), want the cut line and the next", len(got), got[0].dropped)
	}
}

func TestParseEntry(t *testing.T) {
	tests := []struct {
		line string
		want eventlog.Entry
		ok   bool
	}{
		{`{"event_id":"x","timestamp":"2026-01-02T03:04:05.678Z","level":"info","event":"run.complete","message":"Run succeeded",` +
			`"data":{"jobId":"r","exit_code":0,"status":"succeeded","attempt":1}}`,
			eventlog.Entry{Timestamp: "2026-01-02T03:04:05.678Z", Level: "info", Event: "run.complete", Message: "Run succeeded",
				Fields: []eventlog.Field{{Key: "status", Value: "succeeded"}, {Key: "exit_code", Value: "0"}, {Key: "attempt", Value: "1"}}}, true},
		{`{"event":"console.line","level":"error","message":"Traceback \"x\"\u00e9","data":{"stream":"stderr","scope":"run"}}`,
			eventlog.Entry{Level: "error", Event: "console.line", Message: `Traceback "x"é`,
				Fields: []eventlog.Field{{Key: "stream", Value: "stderr"}}}, true},
		{`{"event":"engine.failed","message":null,"error":{"type":"ValueError","message":"bad header"},"data":[1,2]}`,
			eventlog.Entry{Event: "engine.failed", Error: "bad header"}, true},
		{`{"event":"x","data":{"exit_code":null,"error":{"code":3}}}`,
			eventlog.Entry{Event: "x", Fields: []eventlog.Field{{Key: "error", Value: `{"code":3}`}}}, true},
		{`{"event":7}`, eventlog.Entry{}, false},
		{`{"message":"no event"}`, eventlog.Entry{}, false},
		{`not json`, eventlog.Entry{}, false},
		{`{"event":"cut`, eventlog.Entry{}, false},
	}
	for _, tt := range tests {
		got, ok := eventlog.ParseEntry([]byte(tt.line))
		if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseEntry(%s) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFieldsJSON(t *testing.T) {
	e := eventlog.Entry{Event: "x", Fields: eventlog.Fields{{Key: "status", Value: "failed"}, {Key: "error", Value: "say \"hi\"\n"}}}
	got, err := json.Marshal(e)
	want := `{"timestamp":"","level":"","event":"x","message":"","fields":{"status":"failed","error":"say \"hi\"\n"}}`
	if err != nil || string(got) != want {
		t.Errorf("json = %s, %v; want %s", got, err, want)
	}
}

package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// pipeOne pipes input through a fresh Log and returns the events written and
// the events reported to onEvent.
func pipeOne(t *testing.T, opts Options, input, stream string) (events []map[string]any, seen []seenEvent) {
	t.Helper()
	l := openLog(t, testCtx, opts)
	err := l.Pipe(strings.NewReader(input), "run", stream, func(name string, data json.RawMessage) {
		seen = append(seen, seenEvent{name, string(data)})
	})
	if err != nil {
		t.Fatalf("Pipe: %v", err)
	}
	return readEvents(t, l), seen
}

type seenEvent struct{ name, data string }

var ctxData = map[string]any{"jobId": "job-1", "workspaceId": "ws-1", "configurationId": "cfg-1"}

// with returns ctxData with the given members added or replaced.
func with(kv ...any) map[string]any {
	m := map[string]any{}
	for k, v := range ctxData {
		m[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestPipeEngineEvents(t *testing.T) {
	const full = `"event_id":"e-1","engine_run_id":"r-1","timestamp":"2024-01-02T03:04:05Z","level":"debug","message":"m"`
	tests := []struct {
		name     string
		line     string
		want     map[string]any // members that must match exactly
		wantName string
	}{
		{
			name:     "engine data kept, context added, envelope kept",
			line:     `{` + full + `,"event":"engine.table.mapped","data":{"table":1,"jobId":"engine-job"}}`,
			want:     map[string]any{"event_id": "e-1", "engine_run_id": "r-1", "timestamp": "2024-01-02T03:04:05Z", "level": "debug", "message": "m", "data": with("table", 1.0, "jobId", "engine-job")},
			wantName: "engine.table.mapped",
		},
		{
			name:     "missing envelope filled in",
			line:     `{"event":"engine.start"}`,
			want:     map[string]any{"engine_run_id": "job-1", "level": "info", "message": "", "data": with()},
			wantName: "engine.start",
		},
		{
			name:     "null envelope members filled in",
			line:     `{"event":"engine.start","level":null,"message":null,"event_id":null,"data":null}`,
			want:     map[string]any{"level": "info", "message": "", "data": with()},
			wantName: "engine.start",
		},
		{
			name:     "wrong-typed envelope members replaced",
			line:     `{"event":"x","level":5,"message":["a"],"timestamp":1,"engine_run_id":{},"event_id":7}`,
			want:     map[string]any{"level": "info", "message": "", "engine_run_id": "job-1"},
			wantName: "x",
		},
		{
			name:     "unknown top-level members and error kept",
			line:     `{"zeta":1,"event":"x","alpha":{"b":[1,2]},"error":{"type":"ValueError"}}`,
			want:     map[string]any{"zeta": 1.0, "alpha": map[string]any{"b": []any{1.0, 2.0}}, "error": map[string]any{"type": "ValueError"}},
			wantName: "x",
		},
		{
			name:     "data array kept under value",
			line:     `{"event":"x","data":[1,"a"]}`,
			want:     map[string]any{"data": with("value", []any{1.0, "a"})},
			wantName: "x",
		},
		{
			name:     "data string kept under value",
			line:     `{"event":"x","data":"text"}`,
			want:     map[string]any{"data": with("value", "text")},
			wantName: "x",
		},
		{
			name:     "empty data with spaces",
			line:     `{"event":"x","data":{ }}`,
			want:     map[string]any{"data": with()},
			wantName: "x",
		},
		{
			name:     "spaced JSON with CRLF and inner carriage return",
			line:     "  { \"event\" : \"x\" ,\r \"data\" : { \"a\" : 1 } }  \r",
			want:     map[string]any{"data": with("a", 1.0)},
			wantName: "x",
		},
		{
			name:     "escaped event name",
			line:     `{"event":"engine\u002erun\"q"}`,
			want:     map[string]any{"event": `engine.run"q`},
			wantName: `engine.run"q`,
		},
		{
			name:     "escaped context key in data is not overwritten",
			line:     `{"event":"x","data":{"\u006aobId":"engine-job"}}`,
			want:     map[string]any{"data": with("jobId", "engine-job")},
			wantName: "x",
		},
		{
			name:     "context key spelled as a value is still added",
			line:     `{"event":"x","data":{"note":"jobId"}}`,
			want:     map[string]any{"data": with("note", "jobId")},
			wantName: "x",
		},
		{
			name:     "invalid UTF-8 inside a string",
			line:     "{\"event\":\"x\",\"message\":\"a\xffb\"}",
			want:     map[string]any{"message": "a\uFFFDb"},
			wantName: "x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, seen := pipeOne(t, Options{}, tt.line+"\n", "stdout")
			if len(events) != 1 {
				t.Fatalf("got %d events, want 1", len(events))
			}
			ev := events[0]
			assertEnvelope(t, ev)
			if ev["event"] != tt.wantName {
				t.Errorf("event = %v, want %v", ev["event"], tt.wantName)
			}
			for k, v := range tt.want {
				if !reflect.DeepEqual(ev[k], v) {
					t.Errorf("%s = %#v, want %#v", k, ev[k], v)
				}
			}
			if _, ok := tt.want["event_id"]; !ok && ev["event_id"] != nil && !uuidV4.MatchString(fmt.Sprint(ev["event_id"])) {
				t.Errorf("filled event_id %v is not a UUID v4", ev["event_id"])
			}
			if len(seen) != 1 || seen[0].name != tt.wantName {
				t.Fatalf("onEvent saw %v, want one %q", seen, tt.wantName)
			}
			var data map[string]any
			if err := json.Unmarshal([]byte(seen[0].data), &data); err != nil || !reflect.DeepEqual(data, ev["data"]) {
				t.Errorf("onEvent data = %s, want the data written %v (%v)", seen[0].data, ev["data"], err)
			}
		})
	}
}

func TestPipeConsoleLines(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		stream    string
		wantMsgs  []string
		wantLevel string
	}{
		{"plain text stdout", "hello\nworld\n", "stdout", []string{"hello", "world"}, "info"},
		{"stderr is error level", "Traceback (most recent call last):\n  File \"x\"\n", "stderr", []string{"Traceback (most recent call last):", "  File \"x\""}, "error"},
		{"CRLF stripped", "a\r\nb\r\n", "stdout", []string{"a", "b"}, "info"},
		{"empty and blank lines skipped", "\n\r\n  \t\nx\n\n", "stdout", []string{"x"}, "info"},
		{"last line without newline", "a\nb", "stdout", []string{"a", "b"}, "info"},
		{"JSON array", `[{"event":"x"}]` + "\n", "stdout", []string{`[{"event":"x"}]`}, "info"},
		{"JSON string", `"event"` + "\n", "stdout", []string{`"event"`}, "info"},
		{"JSON null", "null\n", "stdout", []string{"null"}, "info"},
		{"object without event", `{"level":"info","message":"m"}` + "\n", "stdout", []string{`{"level":"info","message":"m"}`}, "info"},
		{"event not a string", `{"event":5}` + "\n", "stdout", []string{`{"event":5}`}, "info"},
		{"broken JSON", `{"event":"x",}` + "\n", "stdout", []string{`{"event":"x",}`}, "info"},
		{"two objects on one line", `{"event":"a"}{"event":"b"}` + "\n", "stdout", []string{`{"event":"a"}{"event":"b"}`}, "info"},
		{"lone carriage return kept inside", "a\rb\n", "stdout", []string{"a\rb"}, "info"},
		{"tabs and quotes", "\tkey=\"v\"\\n\n", "stdout", []string{"\tkey=\"v\"\\n"}, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, seen := pipeOne(t, Options{}, tt.input, tt.stream)
			if len(seen) != 0 {
				t.Errorf("onEvent called for console lines: %v", seen)
			}
			if len(events) != len(tt.wantMsgs) {
				t.Fatalf("got %d events, want %d: %v", len(events), len(tt.wantMsgs), events)
			}
			for i, ev := range events {
				assertEnvelope(t, ev)
				if ev["event"] != "console.line" || ev["level"] != tt.wantLevel || ev["message"] != tt.wantMsgs[i] {
					t.Errorf("event %d = %v %v %q, want console.line %v %q", i, ev["event"], ev["level"], ev["message"], tt.wantLevel, tt.wantMsgs[i])
				}
				if want := with("scope", "run", "stream", tt.stream); !reflect.DeepEqual(ev["data"], want) {
					t.Errorf("event %d data = %v, want %v", i, ev["data"], want)
				}
				if ev["engine_run_id"] != "job-1" || !uuidV4.MatchString(ev["event_id"].(string)) {
					t.Errorf("event %d envelope = %v", i, ev)
				}
			}
		})
	}
}

func TestPipeTruncation(t *testing.T) {
	const max = 16
	tests := []struct {
		name      string
		line      string // without its newline
		wantMsg   string
		wantTrunc bool
	}{
		{"exactly the limit", strings.Repeat("a", max), strings.Repeat("a", max), false},
		{"limit plus carriage return", strings.Repeat("a", max) + "\r", strings.Repeat("a", max), false},
		{"one byte over", strings.Repeat("a", max+1), strings.Repeat("a", max) + " …[truncated 1 bytes]", true},
		{"over with carriage return", strings.Repeat("a", max+3) + "\r", strings.Repeat("a", max) + " …[truncated 3 bytes]", true},
		{"cut on a rune boundary", strings.Repeat("é", 10), strings.Repeat("é", 8) + " …[truncated 4 bytes]", true},
		{"cut before a 4-byte rune", "aaaaaaaaaaaaaa😀b", "aaaaaaaaaaaaaa …[truncated 5 bytes]", true},
		{"JSON event over the limit is a console line", `{"event":"engine.big","x":1}`, `{"event":"engine …[truncated 12 bytes]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, _ := pipeOne(t, Options{maxLineBytes: max}, tt.line+"\nafter\n", "stdout")
			if len(events) != 2 {
				t.Fatalf("got %d events, want 2: %v", len(events), events)
			}
			ev := events[0]
			if ev["event"] != "console.line" || ev["message"] != tt.wantMsg {
				t.Errorf("event = %v %q, want console.line %q", ev["event"], ev["message"], tt.wantMsg)
			}
			data := ev["data"].(map[string]any)
			if got := data["truncated"] == true; got != tt.wantTrunc {
				t.Errorf("data.truncated = %v, want %v", data["truncated"], tt.wantTrunc)
			}
			if !tt.wantTrunc {
				if _, ok := data["truncated"]; ok {
					t.Errorf("data.truncated present on a whole line")
				}
			}
			if events[1]["message"] != "after" {
				t.Errorf("next line = %q, want after", events[1]["message"])
			}
		})
	}
}

// TestPipeLinesAcrossReads covers lines longer than the read buffer, kept
// whole or cut.
func TestPipeLinesAcrossReads(t *testing.T) {
	const max = 3 * readBufferBytes
	tests := []struct {
		name    string
		size    int
		wantLen int
		dropped int
	}{
		{"twice the read buffer, kept", 2 * readBufferBytes, 2 * readBufferBytes, 0},
		{"exactly the limit", max, max, 0},
		{"over the limit", max + readBufferBytes + 7, max, readBufferBytes + 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := strings.Repeat("x", tt.size)
			events, _ := pipeOne(t, Options{maxLineBytes: max}, line+"\r\n{\"event\":\"after\"}", "stderr")
			if len(events) != 2 || events[1]["event"] != "after" {
				t.Fatalf("got %d events, want the line and after", len(events))
			}
			msg := events[0]["message"].(string)
			want := line[:tt.wantLen]
			if tt.dropped > 0 {
				want += fmt.Sprintf(" …[truncated %d bytes]", tt.dropped)
			}
			if msg != want {
				t.Errorf("message has %d bytes (%.40q...), want %d", len(msg), msg[len(msg)-min(len(msg), 40):], len(want))
			}
		})
	}
}

// repeatReader yields n copies of c and then EOF, without holding them.
type repeatReader struct {
	c byte
	n int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = r.c
	}
	r.n -= int64(len(p))
	return len(p), nil
}

func TestPipeHugeLine(t *testing.T) {
	const huge = 50 << 20
	tests := []struct {
		name  string
		input func() io.Reader
		want  int // events
	}{
		{"huge line then a normal line", func() io.Reader {
			return io.MultiReader(strings.NewReader("before\n"), &repeatReader{'x', huge}, strings.NewReader("\n{\"event\":\"after\"}\n"))
		}, 3},
		{"huge last line without newline", func() io.Reader {
			return io.MultiReader(strings.NewReader("before\n"), &repeatReader{'x', huge})
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openLog(t, testCtx, Options{})
			if err := l.Pipe(tt.input(), "run", "stdout", nil); err != nil {
				t.Fatal(err)
			}
			l.Close()
			st, err := os.Stat(l.Path())
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > DefaultMaxLineBytes+4096 {
				t.Errorf("events file has %d bytes, want at most the line limit and envelopes", st.Size())
			}
			events := readEvents(t, l)
			if len(events) != tt.want {
				t.Fatalf("got %d events, want %d", len(events), tt.want)
			}
			if events[0]["message"] != "before" {
				t.Errorf("first line = %q", events[0]["message"])
			}
			big := events[1]
			want := strings.Repeat("x", DefaultMaxLineBytes) + fmt.Sprintf(" …[truncated %d bytes]", huge-DefaultMaxLineBytes)
			if big["message"] != want || big["data"].(map[string]any)["truncated"] != true {
				t.Errorf("huge line not cut as expected: %d bytes, data %v", len(big["message"].(string)), big["data"])
			}
			if tt.want == 3 && events[2]["event"] != "after" {
				t.Errorf("line after the huge one = %v", events[2])
			}
		})
	}
}

func TestPipeInvalidUTF8AndBinary(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rnd.UintN(256))
	}
	tests := []struct {
		name  string
		input string
		want  []string // messages, when checked
	}{
		{"invalid bytes", "a\xffb\xc3\n", []string{"a\uFFFDb\uFFFD"}},
		{"NUL and control characters", "a\x00b\x01c\x1b[31m\x7f\n", []string{"a\x00b\x01c\x1b[31m\x7f"}},
		{"line and paragraph separators", "a\u2028b\u2029c\n", []string{"a\u2028b\u2029c"}},
		{"JSON with a NUL byte", "{\"event\":\"x\x00\"}\n", []string{"{\"event\":\"x\x00\"}"}},
		{"binary garbage", string(garbage), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, max := range []int{0, 7} {
				events, _ := pipeOne(t, Options{maxLineBytes: max}, tt.input, "stderr")
				if tt.want == nil || max != 0 {
					continue
				}
				if len(events) != len(tt.want) {
					t.Fatalf("got %d events, want %d", len(events), len(tt.want))
				}
				for i, ev := range events {
					if ev["message"] != tt.want[i] {
						t.Errorf("message %d = %q, want %q", i, ev["message"], tt.want[i])
					}
				}
			}
		})
	}
}

// errReader returns its data, then err.
type errReader struct {
	data string
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestPipeReadError(t *testing.T) {
	boom := errors.New("boom")
	l := openLog(t, testCtx, Options{})
	err := l.Pipe(&errReader{"a\npartial", boom}, "run", "stdout", nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "stdout") {
		t.Fatalf("Pipe error = %v, want one wrapping boom and naming the stream", err)
	}
	events := readEvents(t, l)
	if len(events) != 2 || events[0]["message"] != "a" || events[1]["message"] != "partial" {
		t.Fatalf("events = %v, want a and partial", events)
	}
}

// TestPipeFlushesWhenIdle checks that lines reach the file while the engine
// is still running, as soon as Pipe has no more input at hand.
func TestPipeFlushesWhenIdle(t *testing.T) {
	l := openLog(t, testCtx, Options{})
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- l.Pipe(r, "run", "stdout", nil) }()
	if _, err := io.WriteString(w, "first\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, _ := os.ReadFile(l.Path())
		if bytes.Contains(raw, []byte(`"message":"first"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("line not flushed while the stream stays open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", "quote\" backslash\\ slash/", "\n\r\t\b\f\x00\x01\x1f\x7f",
		"<html>&", "é😀", "\u2028\u2029", "a\xffb", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	} {
		if got, want := string(appendString(nil, []byte(s))), encodeJSON(s); got != want {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("a\xffb\x00\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		got := appendString(nil, []byte(s))
		if want := encodeJSON(s); string(got) != want {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
		if !utf8.Valid(got) || !json.Valid(got) {
			t.Fatalf("invalid output %q", got)
		}
	})
}

func encodeJSON(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestCutUTF8(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"abc", 3},
		{"aé", 3},
		{"a\xc3", 1},
		{"a\xf0\x9f\x98", 1},
		{"a\xf0\x9f\x98\x80", 5},
		{"a\xff", 2},
		{"\x80\x80\x80\x80\x80", 5},
	}
	for _, tt := range tests {
		if got := cutUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("cutUTF8(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func BenchmarkPipe(b *testing.B) {
	line := `{"event":"engine.table.column.mapped","level":"info","message":"Column mapped","data":{"sheet":"Sheet1","table":0,"column":3,"field":"member_id","score":0.92,"method":"header"}}` + "\n"
	benchmarkPipe(b, line)
}

func BenchmarkPipeConsole(b *testing.B) {
	line := strings.Repeat("console output of the engine, plain text ", 5) + "\n"
	benchmarkPipe(b, line)
}

func benchmarkPipe(b *testing.B, line string) {
	input := []byte(strings.Repeat(line, 20000))
	l, err := Open(b.TempDir()+"/events.ndjson", testCtx, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Pipe(bytes.NewReader(input), "run", "stdout", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzPipe checks that whatever the engine prints, every line written is one
// valid JSON object with the envelope.
func FuzzPipe(f *testing.F) {
	for _, s := range []string{
		"plain\n", `{"event":"x","data":{"a":1}}` + "\n", "{\"event\":\"x\xff\"}\r\n", "a\x00\xff\r\r\n\n",
		`{"event":"x","data":[1]}`, `{"\u0065vent":"x","data":{"\u006aobId":1}}`, strings.Repeat("é", 40),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		l := openLog(t, testCtx, Options{maxLineBytes: 32})
		if err := l.Pipe(bytes.NewReader(input), "run", "stdout", nil); err != nil {
			t.Fatal(err)
		}
		for _, ev := range readEvents(t, l) {
			assertEnvelope(t, ev)
		}
	})
}

// BenchmarkJobLog is what a job costs the log outside its lines: open the
// events file (it ends on a whole line), write an event, relay a short
// stdout and stderr, close. B/op shows the pooled buffers.
func BenchmarkJobLog(b *testing.B) {
	path := b.TempDir() + "/events.ndjson"
	b.ReportAllocs()
	for b.Loop() {
		l, err := Open(path, testCtx, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Emit("info", "run.start", "Run started", nil); err != nil {
			b.Fatal(err)
		}
		for _, stream := range []string{"stdout", "stderr"} {
			if err := l.Pipe(strings.NewReader(`{"event":"engine.run.completed"}`+"\n"), "run", stream, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

package eventlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var splitCases = []string{
	`{}`, ` { } `, "\t{\r\n}\n", `{"a":1}`, `{"a":1,"b":[true,false,null,{"c":"d"}],"e":{}}`,
	`{"n":-0.5E-3}`, `{"n":0}`, `{"n":-0}`, `{"n":1e+10}`, `{"n":12.25e3}`,
	`{"s":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`, `{"\u0061":1,"a":2}`, `{"a":[]}`, `{"a":[ 1 , 2 ]}`,
	"{\"s\":\"\x7f\xff\"}", `{"a":"é😀"}`,
	// invalid
	``, ` `, `[]`, `null`, `"s"`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`,
	`{a:1}`, `{'a':1}`, `{"a":1}}`, `{"a":1} x`, `{} {}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`,
	`{"a":1e}`, `{"a":1e+}`, `{"a":+1}`, `{"a":tru}`, `{"a":nul}`, `{"a":falsey}`, `{"a":"\x"}`,
	`{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\n\"}", `{"a":"open}`, `{"a":[1,]}`,
	`{"a":[1 2]}`, `{"a":[}`, "{\"a\":1}\x00", `{"a":NaN}`, `{"a":Infinity}`, "{\"a\":\xff}",
}

func TestSplitObject(t *testing.T) {
	for _, c := range splitCases {
		checkSplit(t, []byte(c))
	}
	deep := strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1)
	if _, ok := splitObject(nil, []byte(deep)); ok {
		t.Error("splitObject accepted nesting deeper than maxDepth")
	}
	deepArray := "{\"a\":" + strings.Repeat("[", 1<<20)
	if _, ok := splitObject(nil, []byte(deepArray)); ok {
		t.Error("splitObject accepted an unclosed deep array")
	}
}

func FuzzSplitObject(f *testing.F) {
	for _, c := range splitCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkSplit(t, b) })
}

// checkSplit compares splitObject with encoding/json on b.
func checkSplit(t *testing.T, b []byte) {
	t.Helper()
	ms, ok := splitObject(nil, b)
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	want := json.Valid(b) && len(trimmed) > 0 && trimmed[0] == '{'
	if ok != want {
		t.Fatalf("splitObject(%q) = %v, json.Valid says %v", b, ok, want)
	}
	if !ok || !utf8.Valid(b) { // encoding/json would replace invalid UTF-8 in keys
		return
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("json.Unmarshal(%q): %v", b, err)
	}
	last := map[string][]byte{}
	for _, mb := range ms {
		last[string(unquote(mb.key))] = mb.val
	}
	if len(last) != len(m) {
		t.Fatalf("splitObject(%q) found keys %q, encoding/json %v", b, last, m)
	}
	for k, v := range m {
		if !bytes.Equal(last[k], v) {
			t.Fatalf("splitObject(%q)[%q] = %q, encoding/json %q", b, k, last[k], v)
		}
	}
}

func TestClock(t *testing.T) {
	const layout = "2006-01-02T15:04:05.000000Z07:00"
	var c clock
	base := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("X", 3600))
	for _, d := range []time.Duration{0, 1, 999, 1000, 123456789, 999999999, time.Second, time.Second + 5000, 2 * time.Second, 3*time.Second + 7} {
		tm := base.Add(d)
		if got, want := string(c.append(nil, tm)), tm.UTC().Format(layout); got != want {
			t.Errorf("clock.append(%v) = %s, want %s", tm, got, want)
		}
	}
	if got := string(new(clock).appendNow(nil)); !strings.HasSuffix(got, "Z") || len(got) != len("2006-01-02T15:04:05.000000Z") {
		t.Errorf("appendNow = %q", got)
	}
}

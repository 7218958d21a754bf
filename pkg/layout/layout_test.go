package layout

import (
	"fmt"
	"strings"
	"testing"
)

var testLayout = Layout{Configs: "/c", Documents: "/d", Runs: "/r", Venvs: "/v"}

func TestPaths(t *testing.T) {
	l := testLayout
	tests := []struct {
		name string
		fn   func() (string, error)
		want string
	}{
		{"ConfigDir", func() (string, error) { return l.ConfigDir("ws", "cfg") }, "/c/ws/config_packages/cfg"},
		{"DocumentPath", func() (string, error) { return l.DocumentPath("ws", "doc.xlsx") }, "/d/ws/documents/doc.xlsx"},
		{"DocumentPath subfolders", func() (string, error) { return l.DocumentPath("ws", "a/b/c.csv") }, "/d/ws/documents/a/b/c.csv"},
		{"DocumentPath dotted name", func() (string, error) { return l.DocumentPath("ws", "a/..b.csv") }, "/d/ws/documents/a/..b.csv"},
		{"BuildDir", func() (string, error) { return l.BuildDir("ws", "cfg", "b1") }, "/v/ws/cfg/b1"},
		{"RunDir", func() (string, error) { return l.RunDir("ws", "r1") }, "/r/ws/runs/r1"},
		{"InputPath", func() (string, error) { return InputPath("/r/ws/runs/r1", "my file (1).xlsx") }, "/r/ws/runs/r1/input/my file (1).xlsx"},
		{"VenvDir", func() (string, error) { return VenvDir("/v/ws/cfg/b1"), nil }, "/v/ws/cfg/b1/.venv"},
		{"EventsPath", func() (string, error) { return EventsPath("/r/ws/runs/r1"), nil }, "/r/ws/runs/r1/logs/events.ndjson"},
	}
	for _, tt := range tests {
		got, err := tt.fn()
		if err != nil || got != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

var hostileIDs = []string{"", ".", "..", "../x", "a/b", "/abs", `a\b`, "a\x00b", "a\nb", strings.Repeat("x", 256), "\xff"}

func TestHostileIDs(t *testing.T) {
	l := testLayout
	calls := []struct {
		name string
		kind string
		fn   func(bad string) (string, error)
	}{
		{"ConfigDir workspace", "workspace", func(b string) (string, error) { return l.ConfigDir(b, "cfg") }},
		{"ConfigDir configuration", "configuration", func(b string) (string, error) { return l.ConfigDir("ws", b) }},
		{"DocumentPath workspace", "workspace", func(b string) (string, error) { return l.DocumentPath(b, "doc.csv") }},
		{"BuildDir workspace", "workspace", func(b string) (string, error) { return l.BuildDir(b, "cfg", "b") }},
		{"BuildDir configuration", "configuration", func(b string) (string, error) { return l.BuildDir("ws", b, "b") }},
		{"BuildDir build", "build", func(b string) (string, error) { return l.BuildDir("ws", "cfg", b) }},
		{"RunDir workspace", "workspace", func(b string) (string, error) { return l.RunDir(b, "r") }},
		{"RunDir run", "run", func(b string) (string, error) { return l.RunDir("ws", b) }},
		{"CheckID", "run", func(b string) (string, error) { return "", CheckID("run", b) }},
	}
	for _, c := range calls {
		for _, bad := range hostileIDs {
			got, err := c.fn(bad)
			if err == nil {
				t.Errorf("%s(%q) = %q, want an error", c.name, bad, got)
				continue
			}
			want := fmt.Sprintf("refusing %s id %q: an id must be a single folder name", c.kind, bad)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s(%q) error %q, want it to start %q", c.name, bad, err, want)
			}
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, good := range []string{"01J9ZC8Q7S3V", "3f2c1e4a-9b7d-4c2e-8f10-123456789abc", "-x", "..x", "a.b", strings.Repeat("x", 255)} {
		if err := CheckID("run", good); err != nil {
			t.Errorf("CheckID(%q) = %v, want nil", good, err)
		}
	}
}

func TestDocumentPathStoredURI(t *testing.T) {
	for _, bad := range []string{
		"", "../../etc/passwd", "/etc/passwd", "a/../../x", "a/../b", "..", ".", "./a", "a//b", "a/", "a/.",
		"file:///etc/passwd", "file:doc.csv", "s3://bucket/doc.csv", `a\..\..\x`, "a\x00b", "a/\x00/b",
		strings.Repeat("x", 256),
	} {
		got, err := testLayout.DocumentPath("ws", bad)
		if err == nil {
			t.Errorf("DocumentPath(ws, %q) = %q, want an error", bad, got)
			continue
		}
		if want := fmt.Sprintf("refusing document stored_uri %q", bad); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("DocumentPath(ws, %q) error %q, want it to start %q", bad, err, want)
		}
	}
}

func TestCheckFileName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"report.xlsx", true},
		{"my file (1).csv", true},
		{".hidden.csv", true},
		{"résumé.xlsx", true},
		{"", false},
		{"   ", false},
		{".", false},
		{"..", false},
		{"a/b.csv", false},
		{"/etc/passwd", false},
		{`..\x.csv`, false},
		{"a\x00b.csv", false},
		{strings.Repeat("x", 256), false},
	}
	for _, tt := range tests {
		err := CheckFileName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckFileName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.name)) {
			t.Errorf("CheckFileName(%q) error %q does not quote the name", tt.name, err)
		}
		if _, err := InputPath("/r/ws/runs/r1", tt.name); (err == nil) != tt.ok {
			t.Errorf("InputPath(%q) error = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestRelativeRootRefused(t *testing.T) {
	l := Layout{Configs: "c", Documents: "", Runs: "r", Venvs: "./v"}
	if _, err := l.ConfigDir("ws", "cfg"); err == nil {
		t.Error("ConfigDir with a relative root: no error")
	}
	if _, err := l.DocumentPath("ws", "d.csv"); err == nil {
		t.Error("DocumentPath with an empty root: no error")
	}
	if _, err := l.BuildDir("ws", "cfg", "b"); err == nil {
		t.Error("BuildDir with a relative root: no error")
	}
	if _, err := l.RunDir("ws", "r"); err == nil {
		t.Error("RunDir with a relative root: no error")
	}
}

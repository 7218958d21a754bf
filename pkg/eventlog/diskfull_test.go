package eventlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ade-org/ade-worker/pkg/safepath"
	"github.com/ade-org/ade-worker/test/testfs"
)

func TestFullDiskKeepsWholeLines(t *testing.T) {
	dir := testfs.SmallDisk(t, "1m")
	path := filepath.Join(dir, "logs", "events.ndjson")
	l, err := Open(path, testCtx, Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	data := map[string]any{"pad": strings.Repeat("x", 3000)}
	var werr error
	for i := 0; i < 2000 && werr == nil; i++ {
		werr = l.Emit("info", "fill", "filling the disk", data)
	}
	if !errors.Is(werr, syscall.ENOSPC) || !errors.Is(l.WriteErr(), syscall.ENOSPC) {
		t.Fatalf("write error = %v, WriteErr = %v; want ENOSPC", werr, l.WriteErr())
	}
	if !strings.Contains(werr.Error(), "no space left on device") || !strings.Contains(werr.Error(), path) {
		t.Errorf("error %q does not say no space left and where", werr)
	}
	assertWholeLines(t, path)
	// Free space, then the terminal event fits.
	raw, _ := os.ReadFile(path)
	if err := os.Truncate(path, int64(bytes.IndexByte(raw, '\n')+1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Emit("info", "run.complete", "done", nil); err != nil {
		t.Fatalf("emit after space was freed: %v", err)
	}
	lines := assertWholeLines(t, path)
	if lines[len(lines)-1]["event"] != "run.complete" {
		t.Fatalf("last event = %v", lines[len(lines)-1]["event"])
	}
}

func assertWholeLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		t.Fatalf("events file ends in a partial line: %q", raw[max(0, len(raw)-80):])
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		var m map[string]any
		if line == "" || json.Unmarshal([]byte(line), &m) != nil {
			t.Fatalf("line is not a JSON object: %.80q", line)
		}
		out = append(out, m)
	}
	return out
}

func TestOpenUnderRootRefusesLink(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "run")); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(root, "run", "logs", "events.ndjson"), testCtx, Options{Root: root})
	if !errors.Is(err, safepath.ErrSymlink) || !strings.Contains(err.Error(), `"run" is a symbolic link`) {
		t.Fatalf("Open through a link = %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("created %v through the link", entries)
	}
}

package summary

import (
	"os"
	"path/filepath"
	"testing"
)

// outputTree makes:
//
//	base/run/output/normalized.xlsx   a file
//	base/run/output/folder/           a folder
//	base/run/output/link-in  -> normalized.xlsx
//	base/run/output/link-out -> base/outside/secret.xlsx
//	base/run/output/link-dir -> base/outside
//	base/outside/secret.xlsx
//	base/run-link -> run
func outputTree(t *testing.T) (base string) {
	t.Helper()
	base = t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(base, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(filepath.Join(base, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(base, p)); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("run/output/folder")
	mkdir("outside")
	write("run/output/normalized.xlsx")
	write("outside/secret.xlsx")
	link("normalized.xlsx", "run/output/link-in")
	link(filepath.Join(base, "outside/secret.xlsx"), "run/output/link-out")
	link(filepath.Join(base, "outside"), "run/output/link-dir")
	link("run", "run-link")
	return base
}

func TestRelativeOutputPath(t *testing.T) {
	base := outputTree(t)
	run := filepath.Join(base, "run")
	tests := []struct {
		name   string
		runDir string
		path   string
		want   string
		ok     bool
	}{
		{"relative inside", run, "output/normalized.xlsx", "output/normalized.xlsx", true},
		{"absolute inside", run, filepath.Join(run, "output/normalized.xlsx"), "output/normalized.xlsx", true},
		{"uncleaned inside", run, "./output//folder/../normalized.xlsx", "output/normalized.xlsx", true},
		{"run folder with a trailing slash", run + "/", "output/normalized.xlsx", "output/normalized.xlsx", true},
		{"link to a file inside", run, "output/link-in", "output/link-in", true},
		{"run folder reached through a link", filepath.Join(base, "run-link"), filepath.Join(run, "output/normalized.xlsx"), "output/normalized.xlsx", true},
		{"path reached through a link to the run folder", run, filepath.Join(base, "run-link/output/normalized.xlsx"), "output/normalized.xlsx", true},
		{"dot-dot escape", run, "../outside/secret.xlsx", "", false},
		{"dot-dot escape that comes back", run, "../run/output/normalized.xlsx", "output/normalized.xlsx", true},
		{"absolute outside", run, filepath.Join(base, "outside/secret.xlsx"), "", false},
		{"link to a file outside", run, "output/link-out", "", false},
		{"through a link to a folder outside", run, "output/link-dir/secret.xlsx", "", false},
		{"missing file", run, "output/missing.xlsx", "", false},
		{"folder", run, "output/folder", "", false},
		{"the run folder itself", run, ".", "", false},
		{"empty path", run, "", "", false},
		{"empty run folder", "", "output/normalized.xlsx", "", false},
		{"missing run folder", filepath.Join(base, "nope"), "output/normalized.xlsx", "", false},
		{"NUL in path", run, "output/normalized.xlsx\x00.txt", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RelativeOutputPath(tt.runDir, tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("RelativeOutputPath(%q, %q) = %q, %v; want %q, %v", tt.runDir, tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
}

package layout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ade-org/ade-worker/pkg/safepath"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStage(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, src, dst string) // src holds "original"
	}{
		{"new file", func(*testing.T, string, string) {}},
		{"over an existing file", func(t *testing.T, _, dst string) { writeFile(t, dst, "an older, longer staged input") }},
		{"over a hard link to the document", func(t *testing.T, src, dst string) {
			if err := os.Link(src, dst); err != nil {
				t.Skip("no hard links here:", err)
			}
		}},
		{"over a symbolic link", func(t *testing.T, _, dst string) {
			target := filepath.Join(filepath.Dir(dst), "target")
			writeFile(t, target, "target")
			if err := os.Symlink(target, dst); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "stored.csv"), filepath.Join(dir, "input.csv")
			writeFile(t, src, "original")
			tt.setup(t, src, dst)

			if err := Stage(Place{Path: src}, Place{Path: dst}); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, dst); got != "original" {
				t.Errorf("staged content %q, want %q", got, "original")
			}
			si, err := os.Stat(src)
			if err != nil {
				t.Fatal(err)
			}
			di, err := os.Lstat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if os.SameFile(si, di) {
				t.Fatal("dst is the same file as src")
			}
			if di.Mode() != 0o644 {
				t.Errorf("dst mode %v, want -rw-r--r--", di.Mode())
			}
			writeFile(t, dst, "changed by the engine")
			if got := readFile(t, src); got != "original" {
				t.Errorf("writing to dst changed src to %q", got)
			}
		})
	}
}

func TestStageRefuses(t *testing.T) {
	tests := []struct {
		name   string
		onSelf bool // dst is src: it must stay untouched
		setup  func(t *testing.T, dir string) (src, dst string)
	}{
		{"missing document", false, func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "missing.csv"), filepath.Join(dir, "input.csv")
		}},
		{"folder", false, func(t *testing.T, dir string) (string, string) {
			return dir, filepath.Join(dir, "input.csv")
		}},
		{"symbolic link", false, func(t *testing.T, dir string) (string, string) {
			secret := filepath.Join(dir, "secret")
			writeFile(t, secret, "secret")
			link := filepath.Join(dir, "stored.csv")
			if err := os.Symlink(secret, link); err != nil {
				t.Fatal(err)
			}
			return link, filepath.Join(dir, "input.csv")
		}},
		{"onto itself", true, func(t *testing.T, dir string) (string, string) {
			src := filepath.Join(dir, "stored.csv")
			writeFile(t, src, "original")
			return src, filepath.Join(dir, ".", "stored.csv")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := tt.setup(t, dir)
			if err := Stage(Place{Path: src}, Place{Path: dst}); err == nil {
				t.Fatal("no error")
			}
			if tt.onSelf {
				if got := readFile(t, src); got != "original" {
					t.Errorf("document now %q, want it untouched", got)
				}
				return
			}
			if _, err := os.Lstat(dst); !os.IsNotExist(err) {
				t.Errorf("dst exists after a refused stage (%v)", err)
			}
		})
	}
}

// TestStageNeverFollowsLinks: a link anywhere below the documents root
// ("documents/<ws>/evil -> /etc") is refused, names the link, and nothing
// of its target is staged.
func TestStageNeverFollowsLinks(t *testing.T) {
	base := t.TempDir()
	docs, runs, secret := filepath.Join(base, "docs"), filepath.Join(base, "runs"), filepath.Join(base, "etc")
	for _, d := range []string{filepath.Join(docs, "ws", "documents"), filepath.Join(runs, "ws", "runs", "r1", "input"), secret} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(secret, "passwd"), "root:x:0:0")
	if err := os.Symlink(secret, filepath.Join(docs, "ws", "documents", "evil")); err != nil {
		t.Fatal(err)
	}
	dst := Place{Root: runs, Path: filepath.Join(runs, "ws", "runs", "r1", "input", "passwd")}
	err := Stage(Place{Root: docs, Path: filepath.Join(docs, "ws", "documents", "evil", "passwd")}, dst)
	if !errors.Is(err, safepath.ErrSymlink) || !strings.Contains(err.Error(), `"ws/documents/evil" is a symbolic link`) {
		t.Fatalf("Stage through a link = %v", err)
	}
	if _, err := os.Lstat(dst.Path); !os.IsNotExist(err) {
		t.Fatalf("something was staged: %v", err)
	}
	// A run folder reached through a link is refused too.
	writeFile(t, filepath.Join(docs, "ws", "documents", "a.csv"), "a")
	if err := os.Symlink(secret, filepath.Join(runs, "ws", "runs", "r2")); err != nil {
		t.Fatal(err)
	}
	err = Stage(Place{Root: docs, Path: filepath.Join(docs, "ws", "documents", "a.csv")},
		Place{Root: runs, Path: filepath.Join(runs, "ws", "runs", "r2", "a.csv")})
	if !errors.Is(err, safepath.ErrSymlink) {
		t.Fatalf("Stage into a linked run folder = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(secret, "a.csv")); !os.IsNotExist(err) {
		t.Fatal("staged through the linked run folder")
	}
}

func TestStageRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.csv")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{fifo, filepath.Join(dir)} {
		err := Stage(Place{Path: src}, Place{Path: filepath.Join(t.TempDir(), "in.csv")})
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("Stage(%s) = %v, want ErrNotRegular", src, err)
		}
	}
}

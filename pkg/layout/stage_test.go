package layout

import (
	"os"
	"path/filepath"
	"testing"
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

			if err := Stage(src, dst); err != nil {
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
			if err := Stage(src, dst); err == nil {
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

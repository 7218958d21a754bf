package gc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestRemoveTreeMeasuresAndRemoves(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "ws/runs/r1/input/a.csv"), 1000)
	write(t, filepath.Join(root, "ws/runs/r1/output/deep/er/b.xlsx"), 234)
	write(t, filepath.Join(root, "ws/runs/r2/keep"), 1)

	st, err := removeTree(root, "ws/runs/r1", true)
	if err != nil || st.Bytes != 1234 || st.Link || st.Missing {
		t.Fatalf("dry run: %+v, %v; want 1234 bytes", st, err)
	}
	if !exists(filepath.Join(root, "ws/runs/r1/output/deep/er/b.xlsx")) {
		t.Fatal("dry run removed a file")
	}
	st, err = removeTree(root, "ws/runs/r1", false)
	if err != nil || st.Bytes != 1234 {
		t.Fatalf("remove: %+v, %v", st, err)
	}
	if exists(filepath.Join(root, "ws/runs/r1")) || !exists(filepath.Join(root, "ws/runs/r2/keep")) {
		t.Fatal("want r1 gone and r2 kept")
	}
	if st, err := removeTree(root, "ws/runs/r1", false); err != nil || !st.Missing {
		t.Fatalf("missing folder: %+v, %v; want Missing and no error", st, err)
	}
	if err := RemoveAll(root, "ws/runs/none/deeper"); err != nil {
		t.Fatalf("missing parent: %v", err)
	}
}

func TestRemoveTreeNeverFollowsLinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	write(t, filepath.Join(outside, "runs/r1/precious"), 10)
	write(t, filepath.Join(outside, "precious2"), 10)

	// A link where the workspace folder should be: refused, named.
	if err := os.Symlink(outside, filepath.Join(root, "ws")); err != nil {
		t.Fatal(err)
	}
	err := RemoveAll(root, "ws/runs/r1")
	var le *LinkError
	if !errors.As(err, &le) || le.Path != filepath.Join(root, "ws") || !strings.Contains(err.Error(), filepath.Join(root, "ws")) {
		t.Fatalf("link in an earlier element: got %v, want a LinkError naming %s", err, filepath.Join(root, "ws"))
	}
	if _, err := removeTree(root, "ws/runs/r1", true); !errors.As(err, &le) {
		t.Fatalf("dry run through a link: got %v, want a LinkError", err)
	}

	// A link as the last element: the link goes, its target stays.
	write(t, filepath.Join(root, "ws2/runs/placeholder"), 0)
	if err := os.Symlink(filepath.Join(outside, "runs/r1"), filepath.Join(root, "ws2/runs/r1")); err != nil {
		t.Fatal(err)
	}
	st, err := removeTree(root, "ws2/runs/r1", false)
	if err != nil || !st.Link {
		t.Fatalf("last element link: %+v, %v", st, err)
	}
	// Links inside the tree are removed as links.
	write(t, filepath.Join(root, "ws2/runs/r2/file"), 5)
	if err := os.Symlink(outside, filepath.Join(root, "ws2/runs/r2/escape")); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(root, "ws2/runs/r2"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(outside, "runs/r1/precious"), filepath.Join(outside, "precious2")} {
		if !exists(p) {
			t.Errorf("%s was removed through a link", p)
		}
	}
	if exists(filepath.Join(root, "ws2/runs/r1")) || exists(filepath.Join(root, "ws2/runs/r2")) {
		t.Error("the links and the folder should be gone")
	}
}

func TestRemoveAllRefusesPathsOutsideRoot(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{"", ".", "..", "../x", "/etc", "a/../../x"} {
		if err := RemoveAll(root, rel); err == nil {
			t.Errorf("RemoveAll(%q): no error", rel)
		}
	}
}

//go:build linux

package safepath

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree makes root/a/b/c/file ("inside") and a twin outside/a/b/c/file
// ("outside") and returns both folders.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, dir := range []string{root, outside} {
		if err := os.MkdirAll(filepath.Join(dir, "a", "b", "c"), 0o755); err != nil {
			t.Fatal(err)
		}
		content := "inside"
		if dir == outside {
			content = "outside"
		}
		if err := os.WriteFile(filepath.Join(dir, "a", "b", "c", "file"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

var elems = []string{"a", "b", "c", "file"}

// linkAt replaces element i of root/a/b/c/file with a link to the same
// element under outside, and returns the relative path of the link.
func linkAt(t *testing.T, root, outside string, i int) string {
	t.Helper()
	rel := filepath.Join(elems[:i+1]...)
	if err := os.RemoveAll(filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, rel), filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
	return rel
}

func wantSymlink(t *testing.T, err error, link string) {
	t.Helper()
	var e *Error
	if !errors.Is(err, ErrSymlink) || !errors.As(err, &e) || e.Elem != link || !Refused(err) {
		t.Fatalf("err = %v, want a refusal naming the link %q", err, link)
	}
	if !strings.Contains(err.Error(), `"`+link+`" is a symbolic link`) {
		t.Fatalf("message %q does not name the link %q", err, link)
	}
}

func TestOpenReadsInsideRoot(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, _ := tree(t)
		f, err := Open(root, "a/b/c/file", os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		data, _ := io.ReadAll(f)
		if string(data) != "inside" {
			t.Fatalf("read %q", data)
		}
		if f.Name() != filepath.Join(root, "a/b/c/file") {
			t.Fatalf("name %q", f.Name())
		}
	})
}

// eachLink runs f in every mode, in a subtest per element of a/b/c/file,
// with a fresh tree whose element i is a link out of the root.
func eachLink(t *testing.T, f func(t *testing.T, i int, root, outside, link string)) {
	modes(t, func(t *testing.T) {
		for i := range elems {
			t.Run(elems[i], func(t *testing.T) {
				root, outside := tree(t)
				f(t, i, root, outside, linkAt(t, root, outside, i))
			})
		}
	})
}

func TestOpenRefusesLinkAtEveryElement(t *testing.T) {
	eachLink(t, func(t *testing.T, i int, root, outside, link string) {
		for _, flag := range []int{os.O_RDONLY, os.O_WRONLY | os.O_CREATE | os.O_TRUNC} {
			f, err := Open(root, "a/b/c/file", flag, 0o644)
			if err == nil {
				f.Close()
			}
			wantSymlink(t, err, link)
		}
		if _, err := Lstat(root, "a/b/c/file"); i < len(elems)-1 {
			wantSymlink(t, err, link)
		} else if err != nil {
			t.Fatalf("Lstat of a link as the last element: %v", err)
		}
		assertOutsideIntact(t, outside)
	})
}

func TestOpenCreatesNoFileThroughDanglingLink(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, outside := tree(t)
		target := filepath.Join(outside, "new")
		if err := os.Symlink(target, filepath.Join(root, "a", "new")); err != nil {
			t.Fatal(err)
		}
		f, err := Open(root, "a/new", os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			f.Close()
		}
		wantSymlink(t, err, "a/new")
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a file was created through the link: %v", err)
		}
	})
}

func TestLstatDescribesLinkItself(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, outside := tree(t)
		linkAt(t, root, outside, 3)
		info, err := Lstat(root, "a/b/c/file")
		if err != nil || info.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("Lstat = %v, %v; want the link", info, err)
		}
		info, err = Lstat(root, "a/b")
		if err != nil || !info.IsDir() {
			t.Fatalf("Lstat(a/b) = %v, %v", info, err)
		}
		if _, err := Lstat(root, "a/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Lstat(missing) = %v, want not exist", err)
		}
	})
}

func TestMkdirAll(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, outside := tree(t)
		if err := MkdirAll(root, "a/x/y/z", 0o755); err != nil {
			t.Fatal(err)
		}
		if info, err := os.Lstat(filepath.Join(root, "a/x/y/z")); err != nil || !info.IsDir() {
			t.Fatalf("not created: %v", err)
		}
		if err := MkdirAll(root, "a/x/y/z", 0o755); err != nil {
			t.Fatalf("second MkdirAll: %v", err)
		}
		if err := MkdirAll(filepath.Join(root, "new-root"), "x", 0o755); err != nil {
			t.Fatalf("MkdirAll under a missing root: %v", err)
		}
		for i := range elems[:3] {
			root, outside = tree(t)
			link := linkAt(t, root, outside, i)
			wantSymlink(t, MkdirAll(root, "a/b/c/new", 0o755), link)
			if _, err := os.Lstat(filepath.Join(outside, "a/b/c/new")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("created through the link %s", link)
			}
		}
		root, _ = tree(t)
		err := MkdirAll(root, "a/b/c/file/sub", 0o755)
		if !errors.Is(err, ErrNotDir) || !strings.Contains(err.Error(), `"a/b/c/file" is not a directory`) {
			t.Fatalf("MkdirAll under a file: %v", err)
		}
	})
}

func TestRemoveAll(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, outside := tree(t)
		// Links inside the tree are removed as links.
		if err := os.Symlink(outside, filepath.Join(root, "a", "b", "out")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, "a/b/c/file"), filepath.Join(root, "a", "b", "c", "f2")); err != nil {
			t.Fatal(err)
		}
		if err := RemoveAll(root, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(root, "a")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a not removed: %v", err)
		}
		assertOutsideIntact(t, outside)
		if err := RemoveAll(root, "a"); err != nil {
			t.Fatalf("removing a missing path: %v", err)
		}
		if err := RemoveAll(root, "."); err == nil {
			t.Fatal("RemoveAll of the root itself did not fail")
		}
	})
}

func TestRemoveAllNeverThroughLink(t *testing.T) {
	eachLink(t, func(t *testing.T, i int, root, outside, link string) {
		// The link is the last element: removed as a link.
		if err := RemoveAll(root, link); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(root, link)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("link %s not removed: %v", link, err)
		}
		assertOutsideIntact(t, outside)
		// The link is a parent: refused.
		if i < len(elems)-1 {
			root, outside = tree(t)
			link = linkAt(t, root, outside, i)
			wantSymlink(t, RemoveAll(root, "a/b/c/file"), link)
			assertOutsideIntact(t, outside)
		}
	})
}

func assertOutsideIntact(t *testing.T, outside string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(outside, "a/b/c/file"))
	if err != nil || string(data) != "outside" {
		t.Fatalf("the target outside the root was touched: %q, %v", data, err)
	}
}

func TestBadRelativePaths(t *testing.T) {
	root, _ := tree(t)
	for _, rel := range []string{"", "/etc/passwd", "../outside", "a/../../x", "a/./b", "a//b"} {
		if _, err := Open(root, rel, os.O_RDONLY, 0); !errors.Is(err, ErrEscape) {
			t.Errorf("Open(%q) = %v, want ErrEscape", rel, err)
		}
	}
}

func TestRootMayBeALink(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, _ := tree(t)
		alias := filepath.Join(t.TempDir(), "alias")
		if err := os.Symlink(root, alias); err != nil {
			t.Fatal(err)
		}
		f, err := Open(alias, "a/b/c/file", os.O_RDONLY, 0)
		if err != nil {
			t.Fatalf("a root that is a link is the operator's choice: %v", err)
		}
		f.Close()
	})
}

func TestFIFOOpensWithoutBlocking(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, _ := tree(t)
		if err := unix.Mkfifo(filepath.Join(root, "a", "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(root, "a/fifo", os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil || info.Mode()&fs.ModeNamedPipe == 0 {
			t.Fatalf("stat = %v, %v", info, err)
		}
	})
}

func TestRename(t *testing.T) {
	modes(t, func(t *testing.T) {
		root, outside := tree(t)
		if err := Rename(root, "a/b/c/file", "a/b/moved"); err != nil {
			t.Fatal(err)
		}
		if data, err := os.ReadFile(filepath.Join(root, "a/b/moved")); err != nil || string(data) != "inside" {
			t.Fatalf("moved file: %q, %v", data, err)
		}
		link := linkAt(t, root, outside, 1)
		wantSymlink(t, Rename(root, "a/b/moved", "a/x"), link)
		assertOutsideIntact(t, outside)
	})
}

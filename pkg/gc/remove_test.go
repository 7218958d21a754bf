package gc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ade-org/ade-worker/test/testfs"
)

func TestMeasure(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	testfs.WriteFile(t, filepath.Join(root, "ws/runs/r1/input/a.csv"), 1000)
	testfs.WriteFile(t, filepath.Join(root, "ws/runs/r1/output/deep/er/b.xlsx"), 234)
	testfs.WriteFile(t, filepath.Join(outside, "big"), 1<<20)
	if err := os.Symlink(outside, filepath.Join(root, "ws/runs/r1/output/escape")); err != nil {
		t.Fatal(err)
	}
	st, err := measure(root, "ws/runs/r1")
	link := int64(len(outside)) // a link's size is its target's length
	if err != nil || st.Bytes != 1234+link || st.Link || st.Missing {
		t.Fatalf("measure: %+v, %v; want %d bytes, the link not followed", st, err, 1234+link)
	}
	if st, err := measure(root, "ws/runs/none"); err != nil || !st.Missing {
		t.Fatalf("missing folder: %+v, %v", st, err)
	}
	if st, err := measure(root, "nope/runs/r1"); err != nil || !st.Missing {
		t.Fatalf("missing parent: %+v, %v", st, err)
	}
}

func TestMeasureNeverFollowsLinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	testfs.WriteFile(t, filepath.Join(outside, "runs/r1/precious"), 10)
	if err := os.Symlink(outside, filepath.Join(root, "ws")); err != nil {
		t.Fatal(err)
	}
	_, err := measure(root, "ws/runs/r1")
	var le *LinkError
	if !errors.As(err, &le) || le.Path != filepath.Join(root, "ws") {
		t.Fatalf("link in an earlier element: got %v, want a LinkError naming %s", err, filepath.Join(root, "ws"))
	}
	testfs.WriteFile(t, filepath.Join(root, "ws2/runs/placeholder"), 0)
	if err := os.Symlink(filepath.Join(outside, "runs/r1"), filepath.Join(root, "ws2/runs/r1")); err != nil {
		t.Fatal(err)
	}
	if st, err := measure(root, "ws2/runs/r1"); err != nil || !st.Link || st.Bytes != int64(len(filepath.Join(outside, "runs/r1"))) {
		t.Fatalf("last element link: %+v, %v; want the link measured, not its target", st, err)
	}
}

func TestMeasureRefusesPathsOutsideRoot(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{"", ".", "..", "../x", "/etc", "a/../../x"} {
		if _, err := measure(root, rel); err == nil {
			t.Errorf("measure(%q): no error", rel)
		}
	}
}

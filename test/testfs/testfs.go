// Package testfs gives tests the files and disks they fill: a file of a
// given size with its folders, and a small tmpfs to run out of space on.
package testfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// WriteFile writes size zero bytes to path, making its folders.
func WriteFile(t *testing.T, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

// SmallDisk mounts a tmpfs of size (e.g. "2m") and returns its folder,
// unmounted when the test ends. Mounting needs root: without it the test is
// skipped; as root a failed mount fails the test, so a full disk is never
// silently left untested where it could be.
func SmallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill it up needs root; run the tests as root to cover a full disk")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs on %s: %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if exec.Command("umount", dir).Run() != nil {
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

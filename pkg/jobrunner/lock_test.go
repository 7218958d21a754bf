package jobrunner

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestBuildLockRetakenAfterFolderRemoved: the garbage collector removes a
// build folder, lock file included, while it holds the lock. A run waiting
// for that lock must end up holding the lock of the file now at the path,
// so a third process cannot take it beside it.
func TestBuildLockRetakenAfterFolderRemoved(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ws", "cfg", "build")
	rel := filepath.Join("ws", "cfg", "build", ".build.lock")
	gcHeld, err := lockBuildFolder(context.Background(), root, rel)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *os.File, 1)
	go func() {
		f, err := lockBuildFolder(context.Background(), root, rel)
		if err != nil {
			t.Error(err)
		}
		got <- f
	}()
	waitForOpens(t, filepath.Join(dir, ".build.lock"), 2) // the waiter has the old file open
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	gcHeld.Close()
	var waiter *os.File
	select {
	case waiter = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter never got the lock")
	}
	defer waiter.Close()
	if !sameFile(waiter, root, rel) {
		t.Fatal("the waiter holds a lock on a file that is no longer at the path")
	}
	third, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if err := syscall.Flock(int(third.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != syscall.EWOULDBLOCK {
		t.Fatalf("a third process could lock the build folder beside the waiter: %v", err)
	}
}

// waitForOpens waits until this process has path open n times.
func waitForOpens(t *testing.T, path string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		fds, _ := os.ReadDir("/proc/self/fd")
		open := 0
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
				open++
			}
		}
		if open >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is open %d times, want %d", path, open, n)
		}
	}
}

//go:build linux

package safepath

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// lockedUID is an unprivileged uid the test runs RemoveAll as: root
// ignores folder permissions, and would pass without the fix.
const lockedUID = 10001

// TestRemoveAllRestoresLockedFolders: a job's output holding folders its
// owner cannot enter or empty (mode 000, 500) is removed whole, by that
// owner, and a link inside to a locked folder outside leaves it locked.
func TestRemoveAllRestoresLockedFolders(t *testing.T) {
	if root := os.Getenv("SAFEPATH_LOCKED_ROOT"); root != "" {
		// The child, running as lockedUID.
		if err := RemoveAll(root, "run"); err != nil {
			t.Fatalf("RemoveAll as uid %d: %v", os.Getuid(), err)
		}
		return
	}
	base, err := os.MkdirTemp("", "safepath-locked-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = exec.Command("chmod", "-R", "u+rwx", base).Run(); os.RemoveAll(base) }()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root + "/run/output/locked/deeper", root + "/run/output/readonly", outside + "/secret"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{root + "/run/output/locked/deeper/f", root + "/run/output/readonly/f", outside + "/secret/f"} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside+"/secret", root+"/run/output/link"); err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	if uid == 0 {
		uid = lockedUID
		for _, p := range []string{base, root, outside} {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := filepath.Walk(base, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, uid)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for p, mode := range map[string]os.FileMode{root + "/run/output/locked/deeper": 0, root + "/run/output/locked": 0,
		root + "/run/output/readonly": 0o500, outside + "/secret": 0} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getuid() == 0 {
		// The test binary lies in a folder only root may enter.
		self := filepath.Join(base, "safepath.test")
		if out, err := exec.Command("cp", os.Args[0], self).CombinedOutput(); err != nil {
			t.Fatalf("copy the test binary: %v %s", err, out)
		}
		cmd := exec.Command(self, "-test.run=^TestRemoveAllRestoresLockedFolders$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SAFEPATH_LOCKED_ROOT="+root)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RemoveAll as uid %d: %v\n%s", uid, err, out)
		}
	} else if err := RemoveAll(root, "run"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root + "/run"); !os.IsNotExist(err) {
		t.Fatalf("run folder still there: %v", err)
	}
	st, err := os.Stat(outside + "/secret")
	if err != nil || st.Mode().Perm() != 0 {
		t.Fatalf("the folder outside, behind a link, was changed: %v %v", st.Mode(), err)
	}
}

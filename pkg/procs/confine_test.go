package procs_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// TestSandboxedChild: the shim confines the child before exec: it reads
// what the policy lists and nothing else, and what it writes lands only in
// its writable folder.
func TestSandboxedChild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	allowed, denied := filepath.Join(dir, "allowed"), filepath.Join(dir, "denied")
	for _, d := range []string{allowed, denied} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("content"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy := &sandbox.Policy{Mode: sandbox.Required, Read: sandbox.SystemRead, Write: append([]string{allowed}, sandbox.SystemWrite...)}
	for _, way := range confineWays {
		for _, tc := range []struct {
			script string
			ok     bool
		}{
			{"cat " + allowed + "/f", true},
			{"echo x > " + allowed + "/new", true},
			{"cat " + denied + "/f", false},
			{"echo x > " + denied + "/new", false},
			{"cat /proc/1/environ", false},
		} {
			c := sh(tc.script)
			c.Sandbox, c.LimitShim = policy, shim(t)
			var out collect
			c.Stderr = out.sink
			exit, err := procs.Run(context.Background(), way.set(c))
			if err != nil {
				t.Fatal(err)
			}
			if (exit.Code == 0) != tc.ok {
				t.Errorf("%s %q: %+v (%s), want success %v", way.name, tc.script, exit, out.String(), tc.ok)
			}
			if !tc.ok && !strings.Contains(out.String(), "Permission denied") {
				t.Errorf("%s %q: stderr %q, want permission denied", way.name, tc.script, out.String())
			}
		}
	}
	if _, err := os.Stat(filepath.Join(denied, "new")); !os.IsNotExist(err) {
		t.Errorf("the confined child wrote outside its folder: %v", err)
	}
}

// TestSandboxLinks: a confined child makes a symbolic link or a named pipe
// in its writable folder only when its policy allows links (builds), never
// otherwise (runs), whichever way it was confined; plain files either way.
func TestSandboxLinks(t *testing.T) {
	t.Parallel()
	for _, way := range confineWays {
		for _, links := range []bool{false, true} {
			dir := t.TempDir()
			policy := &sandbox.Policy{Mode: sandbox.Required, Read: sandbox.SystemRead,
				Write: append([]string{dir}, sandbox.SystemWrite...), Links: links}
			for _, mk := range []string{"ln -s /etc/hostname " + dir + "/link", "mkfifo " + dir + "/link"} {
				c := sh("echo x > " + dir + "/file && " + mk)
				c.Sandbox, c.LimitShim = policy, shim(t)
				var out collect
				c.Stderr = out.sink
				exit, err := procs.Run(context.Background(), way.set(c))
				if err != nil {
					t.Fatal(err)
				}
				_, linkErr := os.Lstat(filepath.Join(dir, "link"))
				_, fileErr := os.Stat(filepath.Join(dir, "file"))
				if fileErr != nil {
					t.Errorf("%s %q: plain file not written: %v", way.name, mk, fileErr)
				}
				if links && (exit.Code != 0 || linkErr != nil) {
					t.Errorf("%s %q with links allowed: %+v (%s), link: %v, want made", way.name, mk, exit, out.String(), linkErr)
				}
				if !links && (exit.Code == 0 || !os.IsNotExist(linkErr) || !strings.Contains(out.String(), "Permission denied")) {
					t.Errorf("%s %q without links: %+v (%s), link: %v, want refused (permission denied)", way.name, mk, exit, out.String(), linkErr)
				}
				_ = os.Remove(filepath.Join(dir, "link"))
			}
		}
	}
}

// socketProbe tries what Landlock before ABI 9 does not govern: connecting
// to a UNIX socket by path, UDP, io_uring, System V shared memory, the
// user's key ring (syscall numbers of amd64); and what must keep working: a
// TCP socket (Landlock rules its ports) and a socket pair. It prints each
// attempt's outcome: "ok" or the errno's name.
const socketProbe = `
import ctypes, errno, os, socket, sys
def t(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def call(nr, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(nr, *args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r
t("unix", lambda: socket.socket(socket.AF_UNIX).connect(sys.argv[1]))
t("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
t("udp6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
t("io_uring", lambda: os.close(call(425, 8, ctypes.create_string_buffer(120))))
t("shmget", lambda: call(29, 0, 4096, 0o1600))
t("add_key", lambda: call(248, b"user", b"ade-probe", b"x", 1, -4))
t("tcp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK))
t("pair", socket.socketpair)
`

// TestSandboxSockets: a confined child cannot connect to a UNIX socket by
// its path (a local database's, say), set up io_uring, make System V
// shared memory or add a key to the user's key ring, and opens UDP
// sockets only when its policy allows datagrams (builds), whichever way it
// was confined; TCP sockets and socket pairs still open.
func TestSandboxSockets(t *testing.T) {
	t.Parallel()
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil || runtime.GOARCH != "amd64" {
		t.Skip("needs the system Python on amd64 (the probe's syscall numbers):", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "db.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, way := range confineWays {
		for _, datagrams := range []bool{false, true} {
			policy := &sandbox.Policy{Mode: sandbox.Required, Read: append([]string{dir}, sandbox.SystemRead...),
				Write: sandbox.SystemWrite, Datagrams: datagrams}
			var out collect
			c := procs.Command{Path: python, Args: []string{"-c", socketProbe, path}, Sandbox: policy, LimitShim: shim(t),
				Stdout: out.sink, Stderr: out.sink}
			if exit := run(t, context.Background(), way.set(c)); exit.Code != 0 {
				t.Fatalf("%s: probe %+v: %s", way.name, exit, out.String())
			}
			udp := "EACCES"
			if datagrams {
				udp = "ok"
			}
			want := fmt.Sprintf("unix EACCES\nudp %s\nudp6 %s\nio_uring EACCES\nshmget EACCES\nadd_key EACCES\ntcp ok\npair ok", udp, udp)
			if got := strings.TrimSpace(out.String()); got != want {
				t.Errorf("%s, datagrams %v:\n%s\nwant\n%s", way.name, datagrams, got, want)
			}
		}
	}
}

// TestNotDumpable: a process of the same unprivileged uid reads a normal
// process's environment, and not a non-dumpable one's.
func TestNotDumpable(t *testing.T) {
	t.Parallel()
	if os.Getenv(dumpHelperEnv) != "" {
		return
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to run both processes as another uid")
	}
	base, err := os.MkdirTemp("", "procs-dump-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(base, "procs.test")
	if out, err := exec.Command("cp", shim(t), self).CombinedOutput(); err != nil {
		t.Fatalf("copy the test binary: %v %s", err, out)
	}
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 10001, Gid: 10001}}
	for _, dumpable := range []bool{true, false} {
		target := exec.Command(self, "-test.run=^TestNotDumpableHelper$")
		target.Env = []string{dumpHelperEnv + "=" + strconv.FormatBool(dumpable), "ADE_SECRET=hunter2"}
		target.SysProcAttr = cred
		stdout, _ := target.StdoutPipe()
		if err := target.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, _ := stdout.Read(buf) // "ready": NotDumpable has run
		reader := exec.Command("cat", "/proc/"+strconv.Itoa(target.Process.Pid)+"/environ")
		reader.SysProcAttr = cred
		out, readErr := reader.CombinedOutput()
		_ = target.Process.Kill()
		_ = target.Wait()
		if string(buf[:n]) != "ready\n" {
			t.Fatalf("helper said %q", buf[:n])
		}
		if got := strings.Contains(string(out), "hunter2"); got != dumpable {
			t.Errorf("dumpable %v: same-uid read of environ = %q (%v), want secret visible %v", dumpable, out, readErr, dumpable)
		}
	}
}

const dumpHelperEnv = "ADE_PROCS_DUMP_HELPER"

// TestNotDumpableHelper is the target process of TestNotDumpable.
func TestNotDumpableHelper(t *testing.T) {
	v := os.Getenv(dumpHelperEnv)
	if v == "" {
		t.Skip("runs only as TestNotDumpable's helper")
	}
	if v == "false" {
		if err := procs.NotDumpable(); err != nil {
			t.Fatal(err)
		}
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestConfinedChildCannotSignalItsParent: the direct start confines one
// thread of this process to fork the child; that thread must be gone by the
// time the child runs, or the child could signal it (tgkill) and so stop or
// kill its jobrunner. The child tries every thread id this process may
// have, with signal 0.
func TestConfinedChildCannotSignalItsParent(t *testing.T) {
	t.Parallel()
	if os.Getenv(signalHelperEnv) != "" {
		return
	}
	self := shim(t)
	policy := &sandbox.Policy{Mode: sandbox.Required, Read: append([]string{filepath.Dir(self)}, sandbox.SystemRead...), Write: sandbox.SystemWrite}
	last, err := os.ReadFile("/proc/sys/kernel/ns_last_pid")
	if err != nil {
		t.Skip("no ns_last_pid:", err)
	}
	for _, way := range confineWays {
		for _, limits := range [][]procs.Rlimit{nil, {{Resource: unix.RLIMIT_NOFILE, Max: 64}}} {
			var out collect
			c := procs.Command{Path: self, Args: []string{"-test.run=^TestSignalHelper$"},
				Env:     map[string]string{signalHelperEnv: strconv.Itoa(os.Getpid()) + " " + strings.TrimSpace(string(last))},
				Sandbox: policy, Rlimits: limits, LimitShim: self, Stdout: out.sink, Stderr: out.sink}
			if exit := run(t, context.Background(), way.set(c)); exit.Code != 0 {
				t.Fatalf("%s: helper %+v: %s", way.name, exit, out.String())
			}
			if !strings.Contains(out.String(), "signalled 0 threads") || strings.Contains(out.String(), "refused 0 ") {
				t.Errorf("%s, limits %v: %s; want every thread refused", way.name, limits, out.String())
			}
		}
	}
}

const signalHelperEnv = "ADE_PROCS_SIGNAL_HELPER"

// TestConfinedFromTheMainThread: the jobrunner starts its steps from its
// main goroutine with GOMAXPROCS=1, so the goroutine that confines a
// thread can get the main thread, which Go parks instead of ending when a
// locked goroutine returns: left in the child's domain it would let the
// child stop or kill the whole process (kill(2) of the parent's pid is
// checked against the main thread). A helper process makes that happen
// (mainThreadStart) and starts the signal helper.
func TestConfinedFromTheMainThread(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(shim(t), "-test.run=^$")
	cmd.Env = append(os.Environ(), mainThreadEnv+"=1", "GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "started from the main thread") {
		t.Fatalf("the helper did not start from its main thread: %s", out)
	}
	if !strings.Contains(string(out), "signalled 0 threads") || strings.Contains(string(out), "refused 0 ") {
		t.Errorf("%s; want every thread refused", out)
	}
}

const mainThreadEnv = "ADE_PROCS_MAIN_THREAD_HELPER"

func init() {
	if os.Getenv(mainThreadEnv) != "" {
		runtime.LockOSThread() // keeps the main goroutine on the main thread until mainThreadStart
	}
}

// mainThreadStart runs in TestConfinedFromTheMainThread's helper process,
// on the main goroutine and thread, and lets go of the thread just before
// the confined start, which (one P) then runs on it.
func mainThreadStart() int {
	if unix.Gettid() != unix.Getpid() {
		fmt.Println("not on the main thread")
		return 1
	}
	fmt.Println("started from the main thread")
	self, err := os.Executable()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	last, err := os.ReadFile("/proc/sys/kernel/ns_last_pid")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	policy := &sandbox.Policy{Mode: sandbox.Required, Read: append([]string{filepath.Dir(self)}, sandbox.SystemRead...), Write: sandbox.SystemWrite}
	c := procs.Command{Path: self, Args: []string{"-test.run=^TestSignalHelper$"},
		Env:     map[string]string{signalHelperEnv: strconv.Itoa(os.Getpid()) + " " + strings.TrimSpace(string(last))},
		Sandbox: policy, LimitShim: self}
	var out collect
	c.Stdout, c.Stderr = out.sink, out.sink
	runtime.UnlockOSThread()
	exit, err := procs.Run(context.Background(), c)
	fmt.Print(out.String())
	if err != nil || exit.Code != 0 {
		fmt.Println("signal helper:", exit, err)
		return 1
	}
	return 0
}

// TestSignalHelper is the confined child of
// TestConfinedChildCannotSignalItsParent.
func TestSignalHelper(t *testing.T) {
	v := os.Getenv(signalHelperEnv)
	if v == "" {
		t.Skip("runs only as a helper")
	}
	var ppid, last int
	if _, err := fmt.Sscan(v, &ppid, &last); err != nil {
		t.Fatal(err)
	}
	signalled, refused := 0, 0
	for tid := ppid; tid <= last+2000; tid++ {
		switch err := unix.Tgkill(ppid, tid, 0); err {
		case nil:
			signalled++
		case unix.EPERM:
			refused++
		}
	}
	fmt.Printf("signalled %d threads, refused %d \n", signalled, refused)
}

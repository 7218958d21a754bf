//go:build linux

package procs_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/test/parallel"
)

// path is the PATH children get: their environment is only what they are
// given.
var path = map[string]string{"PATH": "/usr/bin:/bin"}

func sh(script string) procs.Command {
	return procs.Command{Path: "/bin/sh", Args: []string{"-c", script}, Env: path}
}

// collect returns a sink that keeps everything it reads.
type collect struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *collect) sink(r io.Reader) {
	b, _ := io.ReadAll(r)
	c.mu.Lock()
	c.buf.Write(b)
	c.mu.Unlock()
}

// writerFunc is an io.Writer that hands each write to a func.
type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

func (c *collect) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func run(t *testing.T, ctx context.Context, c procs.Command) procs.Exit {
	t.Helper()
	exit, err := procs.Run(ctx, c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return exit
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		script string
		code   int
	}{
		{"exit 0", 0},
		{"exit 1", 1},
		{"exit 3", 3},
		{"exit 124", 124},
		{"exit 255", 255},
		{"false", 1},
	}
	for _, tc := range cases {
		t.Run(tc.script, func(t *testing.T) {
			t.Parallel()
			exit := run(t, context.Background(), sh(tc.script))
			if exit.Code != tc.code || exit.Signaled() || exit.Signal != 0 {
				t.Errorf("exit = %+v, want code %d", exit, tc.code)
			}
			if want := "exit status " + strconv.Itoa(tc.code); exit.String() != want {
				t.Errorf("String() = %q, want %q", exit.String(), want)
			}
			if exit.Duration <= 0 || exit.Duration > 5*time.Second {
				t.Errorf("duration %v", exit.Duration)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	cases := []procs.Command{
		{Path: "/nonexistent/program"},
		{Path: "/bin/sh", Dir: "/nonexistent/dir"},
	}
	for _, c := range cases {
		if _, err := procs.Run(context.Background(), c); err == nil {
			t.Errorf("Run(%+v) succeeded, want a start error", c)
		}
	}
}

func TestSignalExit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		sig  syscall.Signal
		name string
	}{
		{syscall.SIGKILL, "SIGKILL"},
		{syscall.SIGTERM, "SIGTERM"},
		{syscall.SIGSEGV, "SIGSEGV"},
		{syscall.SIGABRT, "SIGABRT"},
		{syscall.SIGXCPU, "SIGXCPU"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// ulimit -c 0: no core dump for the signals that make one.
			exit := run(t, context.Background(), sh("ulimit -c 0; kill -"+strings.TrimPrefix(tc.name, "SIG")+" $$"))
			if !exit.Signaled() || exit.Signal != tc.sig || exit.Code != -1 {
				t.Fatalf("exit = %+v, want killed by %s", exit, tc.name)
			}
			want := "killed by signal " + tc.name + " (" + strconv.Itoa(int(tc.sig)) + ")"
			if exit.String() != want {
				t.Errorf("String() = %q, want %q", exit.String(), want)
			}
			if procs.SignalName(tc.sig) != tc.name {
				t.Errorf("SignalName = %q", procs.SignalName(tc.sig))
			}
		})
	}
}

// proc is one process as /proc shows it.
type proc struct {
	pid, ppid, pgid int
	state           byte
	comm            string
}

func readProc(pid int) (proc, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, false
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[end+1:]))
	if open < 0 || len(f) < 3 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgid, _ := strconv.Atoi(f[2])
	return proc{pid: pid, ppid: ppid, pgid: pgid, state: f[0][0], comm: string(data[open+1 : end])}, true
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.state != 'Z'
}

// groupMembers lists the live processes in process group pgid.
func groupMembers(pgid int) []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok && p.pgid == pgid && p.state != 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countSleeps(ps []proc) (pids []int) {
	for _, p := range ps {
		if p.comm == "sleep" {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

func TestContextEndKillsWholeGroup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := sh("sleep 60 & sleep 60")
	var sleeps []int
	c.Started = func(pgid int) {
		go func() {
			// Both sleeps running in the child's group: end the context.
			waitFor(5*time.Second, func() bool {
				sleeps = countSleeps(groupMembers(pgid))
				return len(sleeps) == 2
			})
			cancel()
		}()
	}
	start := time.Now()
	exit := run(t, ctx, c)
	if len(sleeps) != 2 {
		t.Fatalf("saw sleeps %v in the group, want 2", sleeps)
	}
	if !exit.Signaled() || exit.Signal != syscall.SIGKILL {
		t.Errorf("exit = %+v, want SIGKILL", exit)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v", d)
	}
	if !waitFor(2*time.Second, func() bool { return !alive(sleeps[0]) && !alive(sleeps[1]) }) {
		t.Errorf("sleeps %v still alive after Run returned", sleeps)
	}
}

// TestDeadlineKills: when the context's deadline passes, Run kills the
// child's whole group, at once or, with a KillGrace the child ignores, when
// the grace is over.
func TestDeadlineKills(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		script     string
		timeout    time.Duration
		grace      time.Duration
		minRunTime time.Duration // the timeout plus any grace, less some slack
	}{
		{"the whole group at the deadline", "sleep 60 & sleep 60", 300 * time.Millisecond, 0, 250 * time.Millisecond},
		// The deadline counts from the trap being set (READY): on a busy
		// machine the shell may take longer than the timeout to get there.
		{"after a grace the child ignores", `trap '' TERM; : > "$READY"; while :; do sleep 0.05; done`,
			200 * time.Millisecond, 300 * time.Millisecond, 450 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ready := filepath.Join(t.TempDir(), "ready")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			armed := make(chan time.Time, 1)
			go func() {
				if strings.Contains(tc.script, "READY") && !waitFor(30*time.Second, func() bool { _, err := os.Stat(ready); return err == nil }) {
					t.Error("the shell never set its trap")
				}
				armed <- time.Now()
				time.AfterFunc(tc.timeout, cancel)
			}()
			var pgid int
			c := sh(tc.script)
			c.Env = map[string]string{"PATH": path["PATH"], "READY": ready}
			c.Started = func(pid int) { pgid = pid }
			c.KillGrace = tc.grace
			exit := run(t, ctx, c)
			start := <-armed
			if d := time.Since(start); d < tc.minRunTime || d > 5*time.Second {
				t.Errorf("Run took %v, want about %v", d, tc.timeout+tc.grace)
			}
			if exit.Signal != syscall.SIGKILL {
				t.Errorf("exit = %+v, want SIGKILL", exit)
			}
			if !waitFor(2*time.Second, func() bool { return len(groupMembers(pgid)) == 0 }) {
				t.Errorf("group %d still has %+v", pgid, groupMembers(pgid))
			}
		})
	}
}

func TestKillGrace(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		grace     time.Duration
		wantTrap  bool
		wantCode  int
		wantSig   syscall.Signal
		maxRunFor time.Duration
	}{
		{"grace lets TERM handler run", 10 * time.Second, true, 7, 0, 5 * time.Second},
		{"no grace kills at once", 0, false, -1, syscall.SIGKILL, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "trapped")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := sh(`trap 'echo term > "$F"; exit 7' TERM; echo ready; while :; do sleep 0.05; done`)
			c.Env = map[string]string{"PATH": path["PATH"], "F": file}
			c.Stdout = func(r io.Reader) {
				sc := bufio.NewScanner(r)
				for sc.Scan() {
					if sc.Text() == "ready" {
						cancel()
					}
				}
			}
			c.KillGrace = tc.grace
			start := time.Now()
			exit := run(t, ctx, c)
			if d := time.Since(start); d > tc.maxRunFor {
				t.Errorf("Run took %v", d)
			}
			if exit.Code != tc.wantCode || exit.Signal != tc.wantSig {
				t.Errorf("exit = %+v, want code %d signal %v", exit, tc.wantCode, tc.wantSig)
			}
			data, err := os.ReadFile(file)
			if trapped := err == nil && string(data) == "term\n"; trapped != tc.wantTrap {
				t.Errorf("TERM handler ran: %v (%q, %v), want %v", trapped, data, err, tc.wantTrap)
			}
		})
	}
}

func TestOutputSinks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		script     string
		wantOut    func(string) bool
		wantErr    func(string) bool
		nilStdout  bool
		nilStderrr bool
	}{
		{
			name:    "both streams, interleaved",
			script:  `i=0; while [ $i -lt 500 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done`,
			wantOut: func(s string) bool { return s == lines("out", 500) },
			wantErr: func(s string) bool { return s == lines("err", 500) },
		},
		{
			name:    "more than a pipe buffer",
			script:  `head -c 3000000 /dev/zero; head -c 1000000 /dev/zero >&2`,
			wantOut: func(s string) bool { return len(s) == 3000000 && strings.Trim(s, "\x00") == "" },
			wantErr: func(s string) bool { return len(s) == 1000000 },
		},
		{
			name:    "no trailing newline, then exit code",
			script:  `printf abc; printf def >&2; exit 4`,
			wantOut: func(s string) bool { return s == "abc" },
			wantErr: func(s string) bool { return s == "def" },
		},
		{
			name:      "nil sinks discard",
			script:    `head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2`,
			nilStdout: true, nilStderrr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errs collect
			c := sh(tc.script)
			if !tc.nilStdout {
				c.Stdout = out.sink
			}
			if !tc.nilStderrr {
				c.Stderr = errs.sink
			}
			done := make(chan procs.Exit)
			go func() {
				exit, _ := procs.Run(context.Background(), c)
				done <- exit
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Run hung")
			}
			if tc.wantOut != nil && !tc.wantOut(out.String()) {
				t.Errorf("stdout (%d bytes) %.80q", len(out.String()), out.String())
			}
			if tc.wantErr != nil && !tc.wantErr(errs.String()) {
				t.Errorf("stderr (%d bytes) %.80q", len(errs.String()), errs.String())
			}
		})
	}
}

func lines(prefix string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(prefix + strconv.Itoa(i) + "\n")
	}
	return b.String()
}

func TestStdin(t *testing.T) {
	t.Parallel()
	var out collect
	c := sh("tr a-z A-Z")
	c.Stdin = strings.NewReader("hello\n")
	c.Stdout = out.sink
	if exit := run(t, context.Background(), c); exit.Code != 0 || out.String() != "HELLO\n" {
		t.Errorf("exit %+v, stdout %q", exit, out.String())
	}
}

func TestGrandchildHoldingPipes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		script  string // prints the pid of a process that holds the pipes
		escaped bool
	}{
		// Killed with the group as soon as the child exits.
		{"in the group", `sleep 30 & echo $!; echo started >&2`, false},
		// Escaped the group: the drain timeout gives up on it. The child
		// exits only once the escaped one is in its own session (it wrote
		// its pid), or the group's kill could still catch it.
		{"in its own session", `f=$(mktemp); setsid sh -c 'echo $$ >"$0"; exec sleep 30' "$f" &
			until [ -s "$f" ]; do sleep 0.01; done; cat "$f"; rm "$f"; echo started >&2`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errs collect
			c := sh(tc.script)
			// The time counts from the child's last line ("started", just
			// before it exits), not from its start: on a busy machine the
			// shell alone may take longer than the drain to get there.
			var last atomic.Pointer[time.Time]
			c.Stdout = out.sink
			c.Stderr = func(r io.Reader) {
				errs.sink(io.TeeReader(r, writerFunc(func(p []byte) {
					now := time.Now()
					last.Store(&now)
				})))
			}
			exit := run(t, context.Background(), c)
			var took time.Duration
			if at := last.Load(); at != nil {
				took = time.Since(*at)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
			if err != nil {
				t.Fatalf("stdout %q: %v", out.String(), err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			if exit.Code != 0 {
				t.Errorf("exit = %+v", exit)
			}
			if tc.escaped && !alive(pid) {
				t.Errorf("the escaped holder %d is gone: the test did not test the drain", pid)
			}
			if !tc.escaped && !waitFor(5*time.Second, func() bool { return !alive(pid) }) {
				t.Errorf("the holder %d in the group outlived it", pid)
			}
			drain := procs.DrainTimeout()
			// The drain's timer starts at the child's exit, a moment after
			// its last line: hence the tenth off.
			if tc.escaped && (took < drain*9/10 || took > drain+1500*time.Millisecond) {
				t.Errorf("Run took %v with the escaped holder, want the drain's %v (and at most 1.5 s more)", took, drain)
			}
			if !tc.escaped && took > drain {
				t.Errorf("Run took %v, want less than the drain's %v: the holder dies with the group", took, drain)
			}
			if errs.String() != "started\n" {
				t.Errorf("stderr %q", errs.String())
			}
		})
	}
}

func TestEnvIsExactlyWhatIsGiven(t *testing.T) {
	t.Setenv("ADE_PROCS_TEST_LEAK", "must not be inherited")
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nil", nil, ""},
		{"empty", map[string]string{}, ""},
		{"sorted, values kept verbatim", map[string]string{"B": "two words", "A": "1", "C": "x=y", "EMPTY": ""},
			"A=1\nB=two words\nC=x=y\nEMPTY=\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out collect
			exit := run(t, context.Background(), procs.Command{Path: "/usr/bin/env", Env: tc.env, Stdout: out.sink})
			if exit.Code != 0 || out.String() != tc.want {
				t.Errorf("env printed %q (exit %+v), want %q", out.String(), exit, tc.want)
			}
		})
	}
}

func TestDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out collect
	c := sh("pwd")
	c.Dir, c.Stdout = dir, out.sink
	if run(t, context.Background(), c); strings.TrimSpace(out.String()) != dir {
		t.Errorf("pwd = %q, want %q", out.String(), dir)
	}
}

func TestRlimits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		limits []procs.Rlimit
		script string
		want   string
	}{
		{"open files", []procs.Rlimit{{Resource: unix.RLIMIT_NOFILE, Max: 64}}, "ulimit -n", "64"},
		{"open files, hard limit too", []procs.Rlimit{{Resource: unix.RLIMIT_NOFILE, Max: 100}}, "ulimit -H -n", "100"},
		{"file size in 512-byte blocks", []procs.Rlimit{{Resource: unix.RLIMIT_FSIZE, Max: 1 << 20}}, "ulimit -f", "2048"},
		{"several, inherited by grandchildren", []procs.Rlimit{
			{Resource: unix.RLIMIT_NOFILE, Max: 77}, {Resource: unix.RLIMIT_CORE, Max: 0}},
			`/bin/sh -c 'echo $(ulimit -n) $(ulimit -c)'`, "77 0"},
	}
	for _, way := range confineWays {
		for _, tc := range cases {
			t.Run(way.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				var out collect
				c := sh(tc.script)
				c.Rlimits, c.LimitShim, c.Stdout = tc.limits, shim(t), out.sink
				if exit := run(t, context.Background(), way.set(c)); exit.Code != 0 || strings.TrimSpace(out.String()) != tc.want {
					t.Errorf("printed %q (exit %+v), want %q", out.String(), exit, tc.want)
				}
			})
		}
	}
}

// confineWays are the two ways a child gets its limits and sandbox: started
// directly (the normal way) and through the shim (hosts that refuse ptrace).
var confineWays = []struct {
	name string
	set  func(procs.Command) procs.Command
}{
	{"direct", func(c procs.Command) procs.Command { return c }},
	{"shim", procs.ViaShim},
}

// TestRlimitsBeforeChildRuns: limits are in force from the child's first
// instruction. (Applying them with prlimit(2) after the child started lost
// this race: a child reading its limits at once saw the parent's, and
// RLIMIT_STACK could be lost for good, since the kernel writes it back at the
// end of execve.) The four cases run at once, eight children each at a
// time, mixing direct starts, which end their thread, with shim starts,
// whose death signal follows the thread that forked them: that mix got
// shim children killed by SIGKILL before startWithDeathSignal.
func TestRlimitsBeforeChildRuns(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		limit  procs.Rlimit
		script string
		want   string
	}{
		{"open files at once", procs.Rlimit{Resource: unix.RLIMIT_NOFILE, Max: 64}, "ulimit -n", "64"},
		{"stack after a pause", procs.Rlimit{Resource: unix.RLIMIT_STACK, Max: 4 << 20}, "sleep 0.05; ulimit -s", "4096"},
	}
	for _, way := range confineWays {
		for _, tc := range cases {
			t.Run(way.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				const tries, atOnce = 40, 8
				var misses atomic.Int32
				var wg sync.WaitGroup
				sem := make(chan struct{}, atOnce)
				for i := 0; i < tries; i++ {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer func() { <-sem; wg.Done() }()
						var out collect
						c := sh(tc.script)
						c.Rlimits, c.LimitShim, c.Stdout = []procs.Rlimit{tc.limit}, shim(t), out.sink
						var errOut collect
						c.Stderr = errOut.sink
						exit, err := procs.Run(context.Background(), way.set(c))
						if err != nil {
							t.Errorf("Run: %v", err) // not Fatal: this is not the test's goroutine
						}
						if got := strings.TrimSpace(out.String()); got != tc.want {
							t.Logf("printed %q, exit %+v, stderr %q", got, exit, errOut.String())
							misses.Add(1)
						}
					}()
				}
				wg.Wait()
				if n := misses.Load(); n > 0 {
					t.Errorf("%d of %d children did not get the limit", n, tries)
				}
			})
		}
	}
}

func TestDescendants(t *testing.T) {
	t.Parallel()
	ready := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := sh(`sleep 60 & sleep 60 & wait`)
	c.Started = func(pid int) { ready <- pid }
	done := make(chan procs.Exit, 1)
	go func() {
		exit, _ := procs.Run(ctx, c)
		done <- exit
	}()
	shPid := <-ready
	var sleeps []int
	if !waitFor(5*time.Second, func() bool {
		sleeps = procs.Descendants(shPid)
		for _, pid := range sleeps {
			if p, _ := readProc(pid); p.comm != "sleep" { // forked, not yet exec'd
				return false
			}
		}
		return len(sleeps) == 2
	}) {
		t.Fatalf("Descendants(%d) = %v, want two sleeps", shPid, sleeps)
	}
	for _, pid := range sleeps {
		if p, _ := readProc(pid); p.comm != "sleep" || p.ppid != shPid {
			t.Errorf("descendant %+v is not a sleep under %d", p, shPid)
		}
	}
	// The fallback for kernels without children lists sees the same tree.
	if scanned := procs.DescendantsByScan(shPid); !sameSet(scanned, sleeps) {
		t.Errorf("DescendantsByScan(%d) = %v, Descendants = %v", shPid, scanned, sleeps)
	}
	// From the test process: the shell and, below it, both sleeps.
	mine := map[int]bool{}
	for _, pid := range procs.Descendants(os.Getpid()) {
		mine[pid] = true
	}
	for _, pid := range append([]int{shPid}, sleeps...) {
		if !mine[pid] {
			t.Errorf("pid %d missing from Descendants(self) = %v", pid, mine)
		}
	}
	if got := procs.Descendants(sleeps[0]); len(got) != 0 {
		t.Errorf("Descendants(leaf) = %v", got)
	}
	if got := procs.Descendants(1 << 30); len(got) != 0 {
		t.Errorf("Descendants(no such pid) = %v", got)
	}
	cancel()
	<-done
}

func sameSet(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[int]bool{}
	for _, x := range a {
		in[x] = true
	}
	for _, x := range b {
		if !in[x] {
			return false
		}
	}
	return true
}

// helperEnv makes the test binary run one destructive scenario in a process
// of its own: KillDescendants and BecomeSubreaper act on the whole process.
const helperEnv = "ADE_PROCS_TEST_HELPER"

func TestKillDescendants(t *testing.T) {
	t.Parallel()
	for _, scenario := range []string{"direct", "subreaper", "run-option", "orphans"} {
		t.Run(scenario, func(t *testing.T) {
			t.Parallel()
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^TestKillDescendantsHelper$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"="+scenario)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestKillDescendantsHelper") {
				t.Fatalf("helper %s: %v\n%s", scenario, err, out)
			}
		})
	}
}

// TestKillDescendantsHelper runs only inside the process TestKillDescendants
// starts.
func TestKillDescendantsHelper(t *testing.T) {
	scenario := os.Getenv(helperEnv)
	if scenario == "" {
		t.Skip("runs only as TestKillDescendants' helper process")
	}
	self := os.Getpid()
	switch scenario {
	case "direct":
		// A shell with two sleeps, all still descendants of this process.
		cmd := exec.Command("/bin/sh", "-c", "sleep 60 & sleep 60 & wait")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var victims []int
		if !waitFor(5*time.Second, func() bool { victims = procs.Descendants(self); return len(victims) == 3 }) {
			t.Fatalf("descendants %v, want sh and two sleeps", victims)
		}
		procs.KillDescendants()
		checkGone(t, self, victims)
	case "subreaper":
		// A daemon that detached (its parent exited) is reparented to a
		// subreaper, so it is still found and killed.
		if err := procs.BecomeSubreaper(); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("/bin/sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!").Output()
		if err != nil {
			t.Fatal(err)
		}
		daemon, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("daemon pid %q", out)
		}
		if p, _ := readProc(daemon); p.ppid != self {
			t.Fatalf("daemon %+v not reparented to the subreaper %d", p, self)
		}
		if got := procs.Descendants(self); len(got) != 1 || got[0] != daemon {
			t.Fatalf("Descendants(self) = %v, want [%d]", got, daemon)
		}
		procs.KillDescendants()
		checkGone(t, self, []int{daemon})
		// Reaped, not left a zombie.
		if !waitFor(2*time.Second, func() bool { _, ok := readProc(daemon); return !ok }) {
			p, _ := readProc(daemon)
			t.Errorf("daemon left as %+v", p)
		}
	case "run-option":
		// Command.KillDescendants: a daemon in its own session holding the
		// output pipe is killed when the child exits, so Run does not wait
		// for the drain timeout either.
		if err := procs.BecomeSubreaper(); err != nil {
			t.Fatal(err)
		}
		var out collect
		c := sh("setsid sleep 60 & echo $!")
		c.Stdout, c.KillDescendants = out.sink, true
		start := time.Now()
		exit := run(t, context.Background(), c)
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("Run took %v", d)
		}
		daemon, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil || exit.Code != 0 {
			t.Fatalf("stdout %q, exit %+v", out.String(), exit)
		}
		checkGone(t, self, []int{daemon})
	case "orphans":
		// A supervisor's view: its jobrunners are Children; one dies by
		// SIGKILL leaving a daemon, which becomes ours and is ended when
		// that jobrunner is reaped, while the other jobrunner lives on.
		if err := procs.BecomeSubreaper(); err != nil {
			t.Fatal(err)
		}
		children := &procs.Children{}
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		live := make(chan int, 1)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			c := sh("sleep 60")
			c.Children, c.Started = children, func(pid int) { live <- pid }
			_, _ = procs.Run(ctx, c)
		}()
		other := <-live
		var out collect
		c := sh("setsid sleep 60 >/dev/null 2>&1 & echo $!; kill -9 $$")
		c.Children, c.Stdout = children, out.sink
		if exit := run(t, context.Background(), c); exit.Signal != syscall.SIGKILL {
			t.Fatalf("the dying jobrunner ended %+v, want SIGKILL", exit)
		}
		daemon, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("daemon pid %q", out.String())
		}
		if !waitFor(2*time.Second, func() bool { _, ok := readProc(daemon); return !ok }) {
			p, _ := readProc(daemon)
			t.Errorf("the orphaned daemon is left as %+v, want killed and reaped", p)
		}
		if !alive(other) {
			t.Errorf("the other, live jobrunner %d was killed by the sweep", other)
		}
		stop()
		<-ended
	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
}

func checkGone(t *testing.T, self int, pids []int) {
	t.Helper()
	if !waitFor(2*time.Second, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("still alive after KillDescendants: %v", pids)
	}
	if got := procs.Descendants(self); len(got) != 0 {
		t.Errorf("Descendants(self) after KillDescendants = %v", got)
	}
}

// TestMain lets the test binary serve as the limit shim.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == procs.LimitShimArg {
		err := procs.ExecWithLimits(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	if os.Getenv(mainThreadEnv) != "" {
		os.Exit(mainThreadStart())
	}
	flag.Parse()
	// The tests mostly wait for children: all at once, the package takes
	// about its longest wait, the drain one test waits out.
	parallel.UnlessSet(16)
	procs.ShortenDrain(500 * time.Millisecond)
	os.Exit(m.Run())
}

// shim is the test binary, which execs commands with limits (see TestMain).
func shim(t *testing.T) string { return shimPath(t) }

func shimPath(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestRlimitsWithoutShim: a host that refuses the direct start needs the
// shim, and says so; the direct start itself needs none.
func TestRlimitsWithoutShim(t *testing.T) {
	t.Parallel()
	var out collect
	c := sh("ulimit -n")
	c.Rlimits, c.Stdout = []procs.Rlimit{{Resource: unix.RLIMIT_NOFILE, Max: 64}}, out.sink
	if exit := run(t, context.Background(), c); exit.Code != 0 || strings.TrimSpace(out.String()) != "64" {
		t.Errorf("direct start: printed %q (exit %+v), want 64", out.String(), exit)
	}
	if _, err := procs.Run(context.Background(), procs.ViaShim(c)); err == nil || !strings.Contains(err.Error(), "LimitShim") {
		t.Errorf("Run through the shim with no shim: err = %v, want one naming LimitShim", err)
	}
}

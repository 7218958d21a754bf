// Package procs runs the child processes of a job: each in its own process
// group, killed as a group when its context ends, and reaped as soon as it
// exits. Output goes to caller-supplied sinks through pipes, so a child that
// prints without end never buffers in memory here.
package procs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// Command is one process to run.
type Command struct {
	Path string
	Args []string
	// Env is the child's whole environment; nothing is inherited.
	Env   map[string]string
	Dir   string
	Stdin io.Reader
	// ExtraFiles become the child's descriptors 3, 4, ... (os/exec's
	// ExtraFiles): the supervisor's lease renewals reach a jobrunner so.
	ExtraFiles []*os.File
	// KillGrace is how long a child has between SIGTERM and SIGKILL when its
	// context ends. Zero kills at once.
	KillGrace time.Duration
	// Stdout and Stderr consume the child's output until EOF; nil discards.
	Stdout, Stderr func(io.Reader)
	// Started is called with the child's pid once it runs.
	Started func(pid int)
	// DeathSignal is what the kernel sends the child if this process dies;
	// zero means SIGKILL. A child that must clean up (a jobrunner killing
	// its engine) asks for SIGTERM.
	DeathSignal syscall.Signal
	// KillDescendants kills every remaining descendant of this process once
	// the child exits: with a subreaper (see BecomeSubreaper) that includes
	// daemons the child started in a session of their own.
	KillDescendants bool
	// Rlimits are in force from the child's first instruction on (its
	// children inherit them).
	Rlimits []Rlimit
	// Sandbox, when set, confines the child and everything it starts from
	// its first instruction on (package sandbox).
	Sandbox *sandbox.Policy
	// LimitShim is a binary that calls ExecWithLimits when its first
	// argument is LimitShimArg. Rlimits and Sandbox are applied without it
	// (startConfined) unless this host refuses ptrace: then they need it.
	LimitShim string
	// Children, when set, records the child as a known child of this
	// process from the moment it starts (see Children).
	Children *Children
	// viaShim starts a confined child through LimitShim even where the
	// direct start works (tests of the fallback).
	viaShim bool
}

// Rlimit is one resource limit (unix.RLIMIT_AS, ...), soft and hard alike.
type Rlimit struct {
	Resource int
	Max      uint64
}

// Exit describes how a child ended.
type Exit struct {
	Code     int            // exit status; -1 when killed by a signal
	Signal   syscall.Signal // the signal that killed it, if any
	Duration time.Duration
}

// Signaled reports whether the child was killed by a signal.
func (e Exit) Signaled() bool { return e.Signal != 0 }

func (e Exit) String() string {
	if e.Signaled() {
		return fmt.Sprintf("killed by signal %s (%d)", SignalName(e.Signal), int(e.Signal))
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// drainTimeout bounds how long output is read after the child exits: a
// grandchild that kept the pipes open is killed with the group, but one that
// escaped the group must not hang the job. A variable for the tests only.
var drainTimeout = 2 * time.Second

// Run starts c and waits for it. When ctx ends first the child's process
// group gets SIGTERM, then SIGKILL after KillGrace. Whatever the outcome, the
// rest of the group is killed once the child exits, so nothing it started
// outlives it. The error is non-nil only when the child could not start.
func Run(ctx context.Context, c Command) (Exit, error) {
	p, err := Start(c)
	if err != nil {
		return Exit{}, err
	}
	return p.Wait(ctx)
}

// Proc is a child started by Start and not yet waited for.
type Proc struct {
	c          Command
	cmd        *exec.Cmd
	start      time.Time
	outR, errR *os.File
	drained    chan struct{}
	waited     chan error
}

// Start starts c (see Run); Wait must follow. Its output goes to c.Stdout
// and c.Stderr as it comes.
func Start(c Command) (*Proc, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	start := time.Now()
	cmd, err := c.start(outW, errW)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	p := &Proc{c: c, cmd: cmd, start: start, outR: outR, errR: errR, drained: make(chan struct{}, 2), waited: make(chan error, 1)}
	if c.Started != nil {
		c.Started(p.Pid())
	}
	go sink(c.Stdout, outR, p.drained)
	go sink(c.Stderr, errR, p.drained)
	go func() { p.waited <- cmd.Wait() }()
	return p, nil
}

// Pid is the child's pid, also its process group's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Wait waits for the child to exit, stopping it when ctx ends first (see
// Run), then kills what is left of its group and reads the rest of its
// output.
func (p *Proc) Wait(ctx context.Context) (Exit, error) {
	c, pgid := p.c, p.Pid()
	var waitErr error
	select {
	case waitErr = <-p.waited:
	case <-ctx.Done():
		waitErr = stop(pgid, c.KillGrace, p.waited)
	}
	KillGroup(pgid)
	if c.KillDescendants {
		KillDescendants()
	}
	c.Children.exited(pgid)
	drain(p.drained, p.outR, p.errR)
	exit := Exit{Code: p.cmd.ProcessState.ExitCode(), Duration: time.Since(p.start)}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		exit.Signal = ws.Signal()
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return exit, fmt.Errorf("wait for %s: %w", c.Path, waitErr)
	}
	return exit, nil
}

// start starts the child with its output on stdout and stderr: confined
// directly when it has limits or a sandbox (startConfined), through the
// shim when this host refuses that.
func (c Command) start(stdout, stderr *os.File) (*exec.Cmd, error) {
	confined := len(c.Rlimits) > 0 || c.Sandbox != nil
	if !confined {
		cmd := c.command(c.Path, c.Args, stdout, stderr, true)
		return cmd, startWithDeathSignal(c.Children, cmd)
	}
	if !c.viaShim && !shimOnly.Load() {
		cmd := c.command(c.Path, c.Args, stdout, stderr, false)
		err := startConfined(c.Children, cmd, c.Rlimits, c.Sandbox)
		if err == nil || c.LimitShim == "" || !ptraceRefused(err) {
			return cmd, err
		}
		shimmed, shimErr := c.startViaShim(stdout, stderr)
		if shimErr == nil {
			shimOnly.Store(true) // the shim works where ptrace did not: keep to it
		}
		return shimmed, shimErr
	}
	return c.startViaShim(stdout, stderr)
}

func (c Command) startViaShim(stdout, stderr *os.File) (*exec.Cmd, error) {
	if c.LimitShim == "" {
		return nil, fmt.Errorf("resource limits and the sandbox need a LimitShim on this host")
	}
	args, err := shimArgs(c.Rlimits, c.Sandbox, c.Path, c.Args)
	if err != nil {
		return nil, err
	}
	cmd := c.command(c.LimitShim, args, stdout, stderr, true)
	return cmd, startWithDeathSignal(c.Children, cmd)
}

// The kernel sends a child its parent-death signal when the thread that
// forked it ends, not the process; and a direct confined start ends its
// thread on purpose (startConfined). Had that thread forked a child with a
// death signal before, the child would be killed at once (seen: SIGKILL
// in TestRlimitsBeforeChildRuns, shim and direct starts in parallel). So
// every child with a death signal is forked on one thread kept for it
// alone, which never ends and never runs a confined start.
var deathSignalThread struct {
	once sync.Once
	jobs chan func()
}

func startWithDeathSignal(children *Children, cmd *exec.Cmd) error {
	t := &deathSignalThread
	t.once.Do(func() {
		t.jobs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this goroutine runs for the process's life
			for job := range t.jobs {
				job()
			}
		}()
	})
	done := make(chan error, 1)
	t.jobs <- func() { done <- children.start(cmd) }
	return <-done
}

// command is the exec.Cmd for path and args. deathSignal: whether the
// kernel signals the child when this process dies (see startConfined for
// why a confined child cannot have it).
func (c Command) command(path string, args []string, stdout, stderr *os.File, deathSignal bool) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Env = envList(c.Env)
	cmd.Dir = c.Dir
	cmd.Stdin = c.Stdin
	cmd.ExtraFiles = c.ExtraFiles
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if deathSignal {
		cmd.SysProcAttr.Pdeathsig = c.DeathSignal
		if c.DeathSignal == 0 {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}
	}
	return cmd
}

// stop asks the group to end, then forces it, and returns the wait result.
func stop(pgid int, grace time.Duration, waited <-chan error) error {
	if grace > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case err := <-waited:
			return err
		case <-time.After(grace):
		}
	}
	KillGroup(pgid)
	return <-waited
}

// KillGroup sends SIGKILL to every process in the group.
func KillGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

func sink(fn func(io.Reader), r io.Reader, done chan<- struct{}) {
	if fn == nil {
		fn = func(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
	}
	fn(r)
	done <- struct{}{}
}

func drain(drained <-chan struct{}, files ...*os.File) {
	timeout := time.NewTimer(drainTimeout)
	defer timeout.Stop()
	for n := 0; n < len(files); {
		select {
		case <-drained:
			n++
		case <-timeout.C:
			// Closing the read ends makes the sinks see an error and return.
			for _, f := range files {
				f.Close()
			}
			for ; n < len(files); n++ {
				<-drained
			}
		}
	}
	for _, f := range files {
		f.Close()
	}
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// SignalName is the conventional name of sig (SIGKILL, SIGSEGV, ...).
func SignalName(sig syscall.Signal) string {
	if name, ok := signalNames[sig]; ok {
		return name
	}
	return sig.String()
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGPIPE: "SIGPIPE", syscall.SIGTERM: "SIGTERM", syscall.SIGXCPU: "SIGXCPU",
	syscall.SIGXFSZ: "SIGXFSZ",
}

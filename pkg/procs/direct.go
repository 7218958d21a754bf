package procs

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// startConfined starts cmd with the limits and the sandbox in force before
// its first instruction, without the exec-with-limits shim (a second Go
// program start, about 2.5 ms of CPU a job step):
//
//   - the sandbox: a fresh goroutine locks itself to an OS thread that is
//     not the main one, confines that thread alone (sandbox.Apply) and
//     forks the child from it, so the child is born in the thread's
//     Landlock domain;
//   - the limits: the child asks to be traced (PTRACE_TRACEME), so the
//     kernel stops it right after execve, before the program's first
//     instruction; the thread sets its limits with prlimit(2), queues a
//     SIGSTOP and detaches, so the child goes from that stop to a plain
//     stopped state, still before its first instruction.
//
// The goroutine then returns while still locked, and Go ends its thread.
// Only once that thread is gone does the child get its SIGCONT: nothing of
// this process is left in the child's domain, so the child can never
// signal any of it (it could stop or kill this process through a thread
// of its domain). The main thread is never used: Go parks it instead of
// ending it. The parent-death signal would fire at the confining thread's
// end, so the caller must not ask for one (SysProcAttr.Pdeathsig): a
// confined child outlives a jobrunner killed by SIGKILL until the
// supervisor, its subreaper, sweeps it up (Children).
func startConfined(children *Children, cmd *exec.Cmd, limits []Rlimit, policy *sandbox.Policy) error {
	forked := make(chan confinedFork, 1)
	go confineAndFork(forked, children, cmd, limits, policy)
	f := <-forked
	if f.err != nil {
		return f.err
	}
	pid := cmd.Process.Pid
	if err := waitThreadGone(f.tid, 5*time.Second); err != nil {
		// Never let it run with a thread of ours in its domain.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
		children.exited(pid)
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("let the child run (SIGCONT): %w", err)
	}
	return nil
}

// confinedFork is what confineAndFork reports: the thread that forked the
// child, which ends as the goroutine returns.
type confinedFork struct {
	tid int
	err error
}

func confineAndFork(forked chan<- confinedFork, children *Children, cmd *exec.Cmd, limits []Rlimit, policy *sandbox.Policy) {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	tid := unix.Gettid()
	if tid == unix.Getpid() {
		// The main thread. While this goroutine holds it, the one started
		// here runs on another thread; then it is handed back unconfined.
		inner := make(chan confinedFork, 1)
		go confineAndFork(inner, children, cmd, limits, policy)
		f := <-inner
		runtime.UnlockOSThread()
		forked <- f
		return
	}
	forked <- confinedFork{tid, forkStopped(children, cmd, limits, policy)}
}

// forkStopped confines this thread and forks cmd from it, the child left
// stopped before its first instruction with its limits set.
func forkStopped(children *Children, cmd *exec.Cmd, limits []Rlimit, policy *sandbox.Policy) error {
	if policy != nil {
		if err := sandbox.Apply(*policy); err != nil {
			return err
		}
	}
	cmd.SysProcAttr.Ptrace = true
	if err := children.start(cmd); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := setLimitsAtExec(pid, limits); err != nil {
		// The child never ran an instruction of its program: end it here.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = unix.PtraceDetach(pid)
		_ = cmd.Wait()
		children.exited(pid)
		return err
	}
	return nil
}

// waitThreadGone waits until this process's thread tid has ended.
func waitThreadGone(tid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for pause := 10 * time.Microsecond; ; pause = min(2*pause, time.Millisecond) {
		if err := unix.Tgkill(unix.Getpid(), tid, 0); err == unix.ESRCH {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the thread that confined the child (%d) did not end within %v", tid, limit)
		}
		time.Sleep(pause)
	}
}

// setLimitsAtExec waits for the traced child to stop after execve, sets its
// limits and detaches, leaving it stopped (SIGSTOP) for startConfined.
func setLimitsAtExec(pid int, limits []Rlimit) error {
	var info unix.Siginfo
	for {
		// WNOWAIT: should the child die instead, its exit stays for Wait.
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED|unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the child to exec: %w", err)
		}
		break
	}
	const cldTrapped, cldStopped = 4, 5 // si_code of a stopped child (siginfo.h)
	if info.Code != cldTrapped && info.Code != cldStopped {
		return nil // it is already gone; Wait reports how
	}
	for _, l := range limits {
		lim := unix.Rlimit{Cur: l.Max, Max: l.Max}
		if err := unix.Prlimit(pid, l.Resource, &lim, nil); err != nil {
			return fmt.Errorf("set limit %d: %w", l.Resource, err)
		}
	}
	// Queued now, taken once detached: the child stops again before its
	// first instruction. Detached with signal 0: the SIGTRAP of the exec is
	// not delivered.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("hold the child (SIGSTOP): %w", err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fmt.Errorf("let the child run (PTRACE_DETACH): %w", err)
	}
	return nil
}

// shimOnly is set once a direct start was refused for want of ptrace
// (Yama's ptrace_scope 2 or 3, a seccomp filter that denies it): from then
// on every confined start goes through the shim.
var shimOnly atomic.Bool

// ptraceRefused reports whether a direct start failed because the child
// could not ask to be traced.
func ptraceRefused(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EACCES)
}

package procs

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// startConfined starts cmd with the limits and the sandbox in force before
// its first instruction, without the exec-with-limits shim (a second Go
// program start, about 2.5 ms of CPU a job step):
//
//   - the sandbox: a fresh goroutine locks itself to its OS thread, confines
//     that thread alone (sandbox.Apply) and forks the child from it, so the
//     child is born in the thread's Landlock domain;
//   - the limits: the child asks to be traced (PTRACE_TRACEME), so the kernel
//     stops it right after execve, before the program's first instruction;
//     the thread sets its limits with prlimit(2), then detaches.
//
// The goroutine then returns while still locked, and Go ends its thread:
// nothing of this process stays in the child's domain, so the child cannot
// signal any of it. The parent-death signal would fire at that thread's
// end, so the caller must not ask for one (SysProcAttr.Pdeathsig): a
// confined child outlives a jobrunner killed by SIGKILL until the
// supervisor, its subreaper, sweeps it up (Children).
func startConfined(children *Children, cmd *exec.Cmd, limits []Rlimit, policy *sandbox.Policy) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		done <- startOnThisThread(children, cmd, limits, policy)
	}()
	return <-done
}

func startOnThisThread(children *Children, cmd *exec.Cmd, limits []Rlimit, policy *sandbox.Policy) error {
	if policy != nil {
		if err := sandbox.Apply(*policy); err != nil {
			return err
		}
	}
	if len(limits) > 0 {
		cmd.SysProcAttr.Ptrace = true
	}
	if err := children.start(cmd); err != nil {
		return err
	}
	if len(limits) == 0 {
		return nil
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

// setLimitsAtExec waits for the traced child to stop after execve, sets its
// limits and lets it go.
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
	// Signal 0: the SIGTRAP of the exec is not delivered.
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

package procs

import (
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Children is the set of child processes this process started on purpose
// (a supervisor's jobrunners). Made a child subreaper (BecomeSubreaper),
// this process inherits the orphans of a jobrunner that died without
// killing its job (SIGKILL, a crash): daemons the job detached. Any child
// not in the set is such an orphan, and Sweep ends it. A nil *Children
// records nothing.
type Children struct {
	mu    sync.Mutex
	known map[int]bool
}

// start starts cmd and records it, under the lock Sweep holds: a child
// between fork and being recorded is never mistaken for an orphan.
func (c *Children) start(cmd *exec.Cmd) error {
	if c == nil {
		return cmd.Start()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	if c.known == nil {
		c.known = map[int]bool{}
	}
	c.known[cmd.Process.Pid] = true
	return nil
}

// exited forgets a child that was waited for and ends what it left behind.
func (c *Children) exited(pid int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.known, pid)
	c.mu.Unlock()
	c.Sweep()
}

// Sweep kills every child of this process that is not in the set, with
// all its descendants, and reaps them. Killing one orphan makes its own
// children ours, so it repeats until none is left (within two seconds; the
// next sweep takes what remains). It returns how many orphans it reaped.
func (c *Children) Sweep() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	self := os.Getpid()
	reaped := 0
	deadline := time.Now().Add(2 * time.Second)
	_, _, _ = killRetry(deadline).Do(func(int) (bool, error) {
		kids, _ := childrenOf(self)
		strays := kids[:0]
		for _, k := range kids {
			if !c.known[k] {
				strays = append(strays, k)
			}
		}
		for _, k := range strays {
			// Descendants first: they would otherwise fork on while k dies.
			for _, d := range Descendants(k) {
				_ = syscall.Kill(d, syscall.SIGKILL)
			}
			_ = syscall.Kill(k, syscall.SIGKILL)
			// k is our child, so its pid cannot be reused before we reap it.
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(k, &ws, syscall.WNOHANG, nil); pid == k {
				reaped++
			}
		}
		return len(strays) > 0, nil
	})
	return reaped
}

package procs

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/tick"
)

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER.
const prSetChildSubreaper = 36

// BecomeSubreaper makes orphaned descendants of this process (a daemon the
// engine forked and detached) its children instead of init's, so
// KillDescendants can still find them.
func BecomeSubreaper() error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// KillDescendants sends SIGKILL to every descendant of this process and
// reaps the ones that became its children. It repeats until no descendant
// is left, so a process forking while it is being killed is caught too.
func KillDescendants() {
	KillDescendantsOf(os.Getpid())
	reapOrphans()
}

// KillDescendantsOf sends SIGKILL to every live descendant of pid until none
// is left, within a bound of two seconds. SIGKILL is delivered
// asynchronously: on a loaded machine a victim may still be alive (not yet a
// zombie) right after kill returns. When pid is this process, the victims
// that became its children are reaped as they die.
func KillDescendantsOf(pid int) {
	self := pid == os.Getpid()
	deadline := time.Now().Add(2 * time.Second)
	_, _, _ = killRetry(deadline).Do(func(int) (bool, error) {
		if self && noChildren() {
			return false, nil
		}
		victims := Descendants(pid)
		for _, v := range victims {
			_ = syscall.Kill(v, syscall.SIGKILL)
		}
		if self {
			reapOrphans()
		}
		return len(victims) > 0, nil
	})
}

// noChildren reports whether this process has no child at all, live or
// zombie (waitid answers ECHILD), and so no descendant: every descendant is
// a child's. It is one system call where Descendants reads a file per
// thread, and it is the usual case once a job's step has ended.
func noChildren() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WSTOPPED|unix.WCONTINUED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == unix.ECHILD
}

// killRetry is how the kill loops look again for processes left: soon at
// first (most die at once), less often later, until deadline.
func killRetry(deadline time.Time) tick.Retry {
	return tick.Retry{First: 100 * time.Microsecond, Max: 20 * time.Millisecond,
		Until: func() time.Time { return deadline }}
}

// reapOrphans collects exited processes that were reparented to us. Only
// called when no os/exec child of ours is being waited for.
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// Descendants lists the live (not zombie) descendants of pid. It follows
// the kernel's per-thread children lists, which costs a few reads per
// process in the tree; where the kernel has no such lists it scans every
// process on the machine instead.
func Descendants(pid int) []int {
	if out, ok := descendantsByChildren(pid); ok {
		return out
	}
	return descendantsByScan(pid)
}

// descendantsByChildren walks /proc/<pid>/task/<tid>/children. ok is false
// when the kernel lacks them (CONFIG_PROC_CHILDREN). A process that exits
// during the walk simply drops out; callers repeat when it matters.
func descendantsByChildren(pid int) (out []int, ok bool) {
	first, ok := childrenOf(pid)
	if !ok {
		return nil, false
	}
	queue := first
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, state, live := statOf(p); !live || state == 'Z' {
			continue // a zombie has no children left: they went to a reaper
		}
		out = append(out, p)
		kids, _ := childrenOf(p)
		queue = append(queue, kids...)
	}
	return out, true
}

// childrenOf lists the children of every thread of pid.
func childrenOf(pid int) ([]int, bool) {
	base := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(base)
	if err != nil {
		return nil, false
	}
	var kids []int
	found := false
	for _, t := range tasks {
		data, err := os.ReadFile(base + t.Name() + "/children")
		if err != nil {
			continue
		}
		found = true
		for _, f := range bytes.Fields(data) {
			if k, err := strconv.Atoi(string(f)); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids, found
}

// descendantsByScan builds the process tree from every /proc/<pid>/stat.
func descendantsByScan(pid int) []int {
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := statOf(p)
		if ok && state != 'Z' {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// statOf reads a process's parent and state from /proc/<pid>/stat.
func statOf(pid int) (ppid int, state byte, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may contain anything; the
	// fields after the last ')' are fixed.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(fields[1]))
	return ppid, fields[0][0], err == nil
}

// Usage sums the threads and resident memory (bytes) of pids, from
// /proc/<pid>/status; a process that is gone counts nothing.
func Usage(pids []int) (threads int, rss int64) {
	for _, pid := range pids {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			key, val, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				continue
			}
			fields := bytes.Fields(val)
			if len(fields) == 0 {
				continue
			}
			n, _ := strconv.ParseInt(string(fields[0]), 10, 64)
			switch string(key) {
			case "Threads":
				threads += int(n)
			case "VmRSS":
				rss += n << 10 // kB
			}
		}
	}
	return threads, rss
}

// NotDumpable makes this process non-dumpable (PR_SET_DUMPABLE 0): no other
// process of the same uid (a job's code) may then read its environment,
// memory or descriptors through /proc, or ptrace it. It lasts until exec.
func NotDumpable() error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Package sandbox confines the processes of one job (the engine during a
// run; pip and the package's install code during a build) with Linux
// Landlock: they may read the system, the Python installation and their own
// inputs, write only their own output folders, connect to no TCP port during
// a run, and signal or ptrace no process outside their own job.
//
// The jobrunner computes a Policy for each step of a job; package procs
// applies it to the thread that forks the step's command (or, on a host
// that refuses that, the exec-with-limits shim applies it to itself just
// before exec): every process of the step, and everything those start,
// lives in one Landlock domain of its own.
package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Mode says how strictly the sandbox is enforced (ADE_WORKER_SANDBOX).
type Mode string

// Modes.
const (
	// Required refuses to start on a kernel that cannot enforce every rule.
	Required Mode = "required"
	// BestEffort enforces what the kernel offers and reports what it lacks.
	BestEffort Mode = "best-effort"
	// Off runs user code unconfined.
	Off Mode = "off"
)

// ParseMode reads a mode as operators write it.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Required, BestEffort, Off:
		return m, nil
	case "besteffort", "best_effort":
		return BestEffort, nil
	}
	return "", fmt.Errorf("want required, best-effort or off, not %q", s)
}

// RequiredABI is the Landlock ABI that every rule needs: filesystem rules
// (1), truncation (3), TCP (4), device ioctls (5), signal and
// abstract-socket scoping (6).
const RequiredABI = 6

// Rule is one kind of confinement and the Landlock ABI it needs.
type Rule struct {
	Name string
	ABI  int
	What string
}

// Rules lists what the sandbox enforces, in the order `supervisor sandbox`
// prints it.
var Rules = []Rule{
	{"filesystem", 1, "reads limited to the system, Python, the job's venv, package and input; writes to the job's own folders"},
	{"ptrace", 1, "no ptrace of processes outside the job (part of every Landlock domain)"},
	{"truncate", 3, "no truncating files outside the job's writable folders"},
	{"tcp", 4, "no TCP connect or bind during a run; a build connects only to the package index ports"},
	{"device-ioctl", 5, "no ioctl on devices outside the job's folders"},
	{"signals", 6, "no signals to processes outside the job"},
	{"abstract-sockets", 6, "no connecting to abstract UNIX sockets outside the job"},
	{"links", 1, "no symbolic links or named pipes made during a run (a build may, in its own folders)"},
	// ABI 0: a seccomp filter, enforced with or without Landlock.
	{"sockets", 0, "no UNIX socket by path, io_uring, System V IPC or key rings; no UDP during a run (seccomp: Landlock governs none of them)"},
}

// Needs says what the kernel must offer for the rule: a Landlock ABI, or
// for ABI 0 seccomp filters.
func (r Rule) Needs() string {
	if r.ABI == 0 {
		return "seccomp filters"
	}
	return fmt.Sprintf("ABI %d", r.ABI)
}

// Support is what this kernel offers.
type Support struct {
	// ABI is the kernel's Landlock ABI; 0 when Landlock is absent or off.
	ABI int
	// Problem says why ABI is 0, when it is.
	Problem string
	// NoSeccomp says why the kernel offers no seccomp filters that can
	// return an errno; "" when it does.
	NoSeccomp string
}

// Probe asks the kernel which Landlock ABI it offers, and whether it
// filters syscalls with seccomp.
func Probe() Support {
	s := Support{NoSeccomp: probeSeccomp()}
	v, err := ll.LandlockGetABIVersion()
	switch {
	case err != nil:
		s.Problem = "Landlock is not available: " + err.Error()
	case v <= 0:
		s.Problem = "Landlock is disabled in this kernel (lsm= boot parameter)"
	default:
		s.ABI = v
	}
	return s
}

// probeSeccomp reads the seccomp actions the kernel offers and says why
// the socket filter cannot be installed, or returns "".
func probeSeccomp() string {
	data, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	switch {
	case err != nil:
		return "this kernel offers no seccomp filters (" + err.Error() + ")"
	case !slices.Contains(strings.Fields(string(data)), "errno"):
		return "this kernel's seccomp filters cannot return an errno (actions: " + strings.TrimSpace(string(data)) + ")"
	case nativeArch() == 0:
		return "the socket filter knows no syscalls of " + runtime.GOARCH
	}
	return ""
}

// Missing lists the rules the kernel cannot enforce.
func (s Support) Missing() []Rule {
	var out []Rule
	for _, r := range Rules {
		if !s.enforces(r) {
			out = append(out, r)
		}
	}
	return out
}

func (s Support) enforces(r Rule) bool {
	if r.ABI == 0 {
		return s.NoSeccomp == ""
	}
	return s.ABI >= r.ABI
}

// Enforced reports whether the kernel enforces the named rule.
func (s Support) Enforced(name string) bool {
	for _, r := range Rules {
		if r.Name == name {
			return s.enforces(r)
		}
	}
	return false
}

// Check decides whether a supervisor may start in mode on this kernel. It
// returns an error (naming the kernel's ABI, what is missing and the
// setting) when mode is Required and a rule cannot be enforced, and
// otherwise the warnings to log at start.
func Check(mode Mode, s Support) (warnings []string, err error) {
	missing := s.Missing()
	switch mode {
	case Off:
		return []string{"ADE_WORKER_SANDBOX=off: configuration packages run unconfined, with every file, port and process this worker can reach"}, nil
	case Required:
		if len(missing) > 0 {
			return nil, fmt.Errorf("sandbox: %s; ADE_WORKER_SANDBOX=required needs Landlock ABI %d and seccomp filters; missing: %s; "+
				"use a newer kernel with Landlock enabled, or set ADE_WORKER_SANDBOX=best-effort (or off) to run with less confinement",
				s.describe(), RequiredABI, names(missing))
		}
		return nil, nil
	case BestEffort:
		if len(missing) > 0 {
			return []string{fmt.Sprintf("ADE_WORKER_SANDBOX=best-effort: %s; not enforced: %s", s.describe(), names(missing))}, nil
		}
		return nil, nil
	}
	return nil, fmt.Errorf("sandbox: unknown mode %q", mode)
}

func (s Support) describe() string {
	out := fmt.Sprintf("this kernel offers Landlock ABI %d", s.ABI)
	if s.ABI == 0 {
		out = "this kernel offers no Landlock (" + s.Problem + ")"
	}
	if s.NoSeccomp != "" {
		out += "; " + s.NoSeccomp
	}
	return out
}

func names(rules []Rule) string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = fmt.Sprintf("%s (%s)", r.Name, r.Needs())
	}
	return strings.Join(out, ", ")
}

// Policy is what the processes of one step may do. The jobrunner builds it
// from the job spec; the shim applies it.
type Policy struct {
	Mode Mode `json:"mode"`
	// Read are files and folders the step may read (and execute).
	Read []string `json:"read,omitempty"`
	// Write are files and folders the step may read, write, create in and
	// remove from.
	Write []string `json:"write,omitempty"`
	// ConnectTCP are the TCP ports the step may connect to; no port may be
	// bound.
	ConnectTCP []uint16 `json:"connect_tcp,omitempty"`
	// Links lets the step create symbolic links and named pipes in the
	// folders of Write (a build: a venv links its python). A run may not:
	// a link left in its output would lead whoever serves that file to
	// wherever it points, and a pipe would hang whoever reads it.
	Links bool `json:"links,omitempty"`
	// Datagrams lets the step open UDP (and other datagram) sockets: a
	// build resolves the package index's name. Runs have no network.
	Datagrams bool `json:"datagrams,omitempty"`
}

// writePlain is what a folder of Write grants without Links: all that
// landlock.RWDirs grants but making symbolic links, named pipes and device
// nodes (the last need a privilege no job has anyway).
const writePlain = ll.AccessFSExecute | ll.AccessFSReadFile | ll.AccessFSReadDir | ll.AccessFSWriteFile |
	ll.AccessFSRemoveDir | ll.AccessFSRemoveFile | ll.AccessFSMakeDir | ll.AccessFSMakeReg |
	ll.AccessFSMakeSock | ll.AccessFSTruncate

// SystemRead are the system files every Python process needs: programs and
// libraries, configuration (certificates, time zones, name service) and the
// harmless devices. Everything else on the host (other tenants' data, the
// database, /proc of other processes, /dev/shm) stays out of reach.
var SystemRead = []string{"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc",
	"/dev/urandom", "/dev/random", "/dev/zero", "/sys/devices/system/cpu"}

// SystemWrite are the devices every process may write.
var SystemWrite = []string{"/dev/null", "/dev/full"}

// Apply confines the calling OS thread, and every program it execs and
// everything those start, from now on. The caller must have locked its
// goroutine to the thread (runtime.LockOSThread) and either exec right after
// (the shim) or fork from it and let the thread end (procs): only this
// thread is restricted, which spares the stop-the-world of restricting every
// thread of the Go runtime (a few milliseconds a job).
// Paths that do not exist are skipped: they cannot be reached anyway.
func Apply(p Policy) error {
	if p.Mode == Off || p.Mode == "" {
		return nil
	}
	cfg := landlock.V6
	if p.Mode == BestEffort {
		cfg = cfg.BestEffort()
	}
	var rules []landlock.Rule
	add := func(paths []string, write bool) {
		dirs, files := split(paths)
		if write {
			dirRule := landlock.PathAccess(writePlain, dirs...)
			if p.Links {
				dirRule = landlock.RWDirs(dirs...)
			}
			rules = append(rules, dirRule.WithRefer().IgnoreIfMissing(), landlock.RWFiles(files...).IgnoreIfMissing())
		} else {
			rules = append(rules, landlock.RODirs(dirs...).IgnoreIfMissing(), landlock.ROFiles(files...).IgnoreIfMissing())
		}
	}
	add(p.Read, false)
	add(p.Write, true)
	for _, port := range p.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil {
		return fmt.Errorf("apply the sandbox: %w", err)
	}
	// Landlock and seccomp need no_new_privs (without CAP_SYS_ADMIN); it
	// also keeps a setuid program from gaining privileges.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("apply the sandbox: set no_new_privs: %w", err)
	}
	if fd >= 0 { // else best effort on a kernel without Landlock
		err := ll.LandlockRestrictSelf(fd, flags)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("apply the sandbox: landlock_restrict_self: %w", err)
		}
	}
	if err := applySeccomp(p.Datagrams); err != nil && p.Mode == Required {
		return fmt.Errorf("apply the sandbox: %w", err)
	}
	return nil
}

// split sorts paths into folders and other files (Landlock grants folder
// rights only on folders), dropping missing ones and duplicates.
func split(paths []string) (dirs, files []string) {
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		st, err := os.Stat(p)
		switch {
		case err != nil:
		case st.IsDir():
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
	}
	sort.Strings(dirs)
	sort.Strings(files)
	return dirs, files
}

package procs

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// LimitShimArg, as the first argument of a binary that calls
// ExecWithLimits from main, makes it apply resource limits and the sandbox
// to itself and exec the real command: both are then in force before the
// command's first instruction, which prlimit(2) on a running child cannot
// promise and Landlock cannot do from outside at all. Run uses the shim
// only where the direct start (startConfined) is refused.
const LimitShimArg = "__exec-with-limits"

// sandboxArg precedes the shim's sandbox policy (JSON). The policy is on the
// shim's command line only: exec replaces it with the command's own.
const sandboxArg = "--sandbox"

// shimArgs builds the shim's command line: the limits, the sandbox policy,
// "--", the command.
func shimArgs(limits []Rlimit, policy *sandbox.Policy, path string, args []string) ([]string, error) {
	out := []string{LimitShimArg}
	for _, l := range limits {
		out = append(out, fmt.Sprintf("%d=%d", l.Resource, l.Max))
	}
	if policy != nil {
		data, err := json.Marshal(policy)
		if err != nil {
			return nil, err
		}
		out = append(out, sandboxArg, string(data))
	}
	out = append(out, "--", path)
	return append(out, args...), nil
}

// ExecWithLimits is the shim's main: args are what follows LimitShimArg.
// It only returns on failure.
func ExecWithLimits(args []string) error {
	// The sandbox confines this thread only, and exec must then come from
	// it: this goroutine never leaves it.
	runtime.LockOSThread()
	var limits []Rlimit
	var policy *sandbox.Policy
	for len(args) > 0 && args[0] != "--" {
		if args[0] == sandboxArg && len(args) > 1 {
			policy = &sandbox.Policy{}
			if err := json.Unmarshal([]byte(args[1]), policy); err != nil {
				return fmt.Errorf("bad sandbox policy: %w", err)
			}
			args = args[2:]
			continue
		}
		res, max, ok := strings.Cut(args[0], "=")
		r, err1 := strconv.Atoi(res)
		m, err2 := strconv.ParseUint(max, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("bad limit %q", args[0])
		}
		limits = append(limits, Rlimit{Resource: r, Max: m})
		args = args[1:]
	}
	if len(args) < 2 {
		return fmt.Errorf("no command after --")
	}
	if !strings.Contains(args[1], "/") {
		resolved, err := exec.LookPath(args[1])
		if err != nil {
			return err
		}
		args[1] = resolved
	}
	// Everything execve needs is built before the limits are set: with an
	// address-space limit below this process's own size, any allocation
	// after it could fail.
	argv, err := syscall.SlicePtrFromStrings(args[1:])
	if err != nil {
		return err
	}
	envv, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		return err
	}
	path, err := syscall.BytePtrFromString(args[1])
	if err != nil {
		return err
	}
	if policy != nil {
		if err := sandbox.Apply(*policy); err != nil {
			return err
		}
	}
	for _, l := range limits {
		lim := unix.Rlimit{Cur: l.Max, Max: l.Max}
		if err := unix.Setrlimit(l.Resource, &lim); err != nil {
			return fmt.Errorf("set limit %d: %w", l.Resource, err)
		}
	}
	_, _, errno := syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(path)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	return fmt.Errorf("exec %s: %w", args[1], errno)
}

package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock before ABI 9 does not govern connecting to a UNIX socket by path
// (a local PostgreSQL's socket with trust authentication, the D-Bus system
// bus) nor UDP, and io_uring's socket operations bypass any syscall filter.
// A seccomp filter on the confining thread, inherited like its Landlock
// domain, closes those: socket(2) for AF_UNIX fails with EACCES, so do
// io_uring_setup(2) and the other deniedSyscalls, and, unless the policy
// allows datagrams (a build resolving the package index's name), so does
// any AF_INET or AF_INET6 socket that is not a stream (TCP stays under
// Landlock's port rules).
// socketpair(2) stays open: a connected pair reaches nobody else.
// A syscall of another architecture's ABI (32-bit int 0x80, x32) is
// refused outright, or it would pass by other numbers.

// seccompData offsets (struct seccomp_data): the syscall number, the
// architecture, then each argument as 64 bits, read here by their low 32
// bits (little-endian).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16
	offArg1 = 24
)

// deniedSyscalls fail with EACCES whatever their arguments: io_uring (its
// socket operations bypass this filter), System V IPC (shared memory,
// message queues and semaphores outlive the job, count against the host's
// memory, and are open to every process of the same uid, which every
// tenant's job is) and the kernel's key rings (the user's is shared the
// same way). Python needs none of them.
var deniedSyscalls = []uintptr{
	unix.SYS_IO_URING_SETUP,
	unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMCTL, unix.SYS_SHMDT,
	unix.SYS_MSGGET, unix.SYS_MSGSND, unix.SYS_MSGRCV, unix.SYS_MSGCTL,
	unix.SYS_SEMGET, unix.SYS_SEMOP, unix.SYS_SEMTIMEDOP, unix.SYS_SEMCTL,
	unix.SYS_ADD_KEY, unix.SYS_KEYCTL, unix.SYS_REQUEST_KEY,
}

// x32Bit marks the x32 ABI's syscall numbers on amd64.
const x32Bit = 0x40000000

// nativeArch is this build's AUDIT_ARCH value, 0 where none is known (no
// filter can be made then: Probe reports it, applySeccomp refuses).
func nativeArch() uint32 {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	}
	return 0
}

// asm assembles a classic BPF program whose jumps name labels; a label is
// the index of the instruction it marks.
type asm struct {
	prog   []unix.SockFilter
	labels map[string]int
	fixups []fixup
}

type fixup struct {
	at     int
	jt, jf string
}

func (a *asm) label(name string) { a.labels[name] = len(a.prog) }

func (a *asm) stmt(code uint16, k uint32) {
	a.prog = append(a.prog, unix.SockFilter{Code: code, K: k})
}

// jump is a conditional jump on the accumulator against k; "" falls through.
func (a *asm) jump(op uint16, k uint32, jt, jf string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), jt, jf})
	a.stmt(unix.BPF_JMP|op|unix.BPF_K, k)
}

func (a *asm) done() []unix.SockFilter {
	for _, f := range a.fixups {
		to := func(l string) uint8 {
			if l == "" {
				return 0
			}
			return uint8(a.labels[l] - f.at - 1)
		}
		a.prog[f.at].Jt, a.prog[f.at].Jf = to(f.jt), to(f.jf)
	}
	return a.prog
}

// socketFilter is the program for a policy that does or does not allow
// datagram sockets.
func socketFilter(arch uint32, datagrams bool) []unix.SockFilter {
	a := &asm{labels: map[string]int{}}
	const load = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	a.stmt(load, offArch)
	a.jump(unix.BPF_JEQ, arch, "", "deny")
	a.stmt(load, offNr)
	a.jump(unix.BPF_JGE, x32Bit, "deny", "")
	for _, nr := range deniedSyscalls {
		a.jump(unix.BPF_JEQ, uint32(nr), "deny", "")
	}
	a.jump(unix.BPF_JEQ, unix.SYS_SOCKET, "", "allow")
	a.stmt(load, offArg0)
	a.jump(unix.BPF_JEQ, unix.AF_UNIX, "deny", "")
	if !datagrams {
		a.jump(unix.BPF_JEQ, unix.AF_INET, "inet", "")
		a.jump(unix.BPF_JEQ, unix.AF_INET6, "", "allow")
		a.label("inet")
		a.stmt(load, offArg1)
		a.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0xf) // the type without SOCK_NONBLOCK, SOCK_CLOEXEC
		a.jump(unix.BPF_JEQ, unix.SOCK_STREAM, "allow", "deny")
	}
	a.label("allow")
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW)
	a.label("deny")
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ERRNO|uint32(unix.EACCES))
	return a.done()
}

// applySeccomp installs the socket filter on the calling thread (no_new_privs
// must be set).
func applySeccomp(datagrams bool) error {
	arch := nativeArch()
	if arch == 0 {
		return fmt.Errorf("the socket filter (seccomp) knows no syscalls of %s", runtime.GOARCH)
	}
	prog := socketFilter(arch, datagrams)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("install the socket filter (seccomp): %w", err)
	}
	return nil
}

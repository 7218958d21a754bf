//go:build linux

package safepath

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once openat2 turned out to be missing (kernels before
// 5.6) or forbidden (some seccomp profiles): the walk does the same job.
var noOpenat2 atomic.Bool

// open opens the whole path with flag (plus O_NOFOLLOW on the walk).
func (p path) open(flag int, perm os.FileMode) (int, error) {
	if len(p.elems) == 0 {
		fd, err := unix.Open(p.root, flag, uint32(perm.Perm()))
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: p.root, Err: err}
		}
		return fd, nil
	}
	if !noOpenat2.Load() {
		fd, err := p.openat2(flag, perm)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.EXDEV) &&
			!errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return -1, err
		}
		// A refusal: let the walk find the element at fault and name it.
	}
	last := len(p.elems) - 1
	dirfd, err := p.walk(last, false, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat(dirfd, p.elems[last], flag|unix.O_NOFOLLOW, uint32(perm.Perm()))
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, p.refuse(dirfd, last, err)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p.full(), Err: err}
	}
	return fd, nil
}

// openat2 opens the path in one call that refuses any link below root.
func (p path) openat2(flag int, perm os.FileMode) (int, error) {
	rootfd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p.root, Err: err}
	}
	defer unix.Close(rootfd)
	how := unix.OpenHow{Flags: uint64(flag), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	if flag&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(perm.Perm())
	}
	fd, err := unix.Openat2(rootfd, p.rel, &how)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) && !noOpenat2.Load() && !openat2Works() {
		noOpenat2.Store(true)
	}
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: p.full(), Err: err}
	}
	return fd, nil
}

// openat2Works probes openat2 on "/" to tell a seccomp EPERM from a
// permission problem of one path.
func openat2Works() bool {
	fd, err := unix.Openat2(unix.AT_FDCWD, "/", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// walk opens the folder made of the first n elements, one element at a
// time with O_NOFOLLOW, creating missing ones with perm when create is set.
// It returns an O_PATH descriptor the caller closes.
func (p path) walk(n int, create bool, perm os.FileMode) (int, error) {
	fd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		// The root is the operator's (a setting); make it like os.MkdirAll.
		if err = os.MkdirAll(p.root, perm); err == nil {
			fd, err = unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p.root, Err: err}
	}
	const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for i := 0; i < n; i++ {
		next, err := unix.Openat(fd, p.elems[i], dirFlags, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if merr := unix.Mkdirat(fd, p.elems[i], uint32(perm.Perm())); merr != nil && !errors.Is(merr, unix.EEXIST) {
				unix.Close(fd)
				return -1, &os.PathError{Op: "mkdir", Path: filepath.Join(p.root, p.prefix(i)), Err: merr}
			}
			next, err = unix.Openat(fd, p.elems[i], dirFlags, 0)
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				err = p.refuse(fd, i, err)
			} else {
				err = &os.PathError{Op: "open", Path: filepath.Join(p.root, p.prefix(i)), Err: err}
			}
			unix.Close(fd)
			return -1, err
		}
		unix.Close(fd)
		fd = next
	}
	return fd, nil
}

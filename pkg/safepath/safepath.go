//go:build linux

// Package safepath opens, creates, inspects and removes paths below a root
// without ever following a symbolic link below that root.
//
// The worker's roots (documents, configuration packages, run folders, build
// environments) are shared with other programs: anyone who can write inside
// one could plant a link ("documents/<ws>/evil -> /etc") that a plain
// os.Open would follow out of the root. Every function here resolves the
// relative path one element at a time from an open descriptor of the root:
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) where the kernel has it,
// else with an openat(O_NOFOLLOW|O_DIRECTORY) walk. A link anywhere below the
// root is refused with an *Error that wraps ErrSymlink. The root itself is
// the operator's choice and may be a link.
package safepath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors wrapped by *Error. They mark certain refusals: trying
// again cannot help.
var (
	ErrSymlink = errors.New("is a symbolic link")
	ErrNotDir  = errors.New("is not a directory")
	ErrEscape  = errors.New("is not a relative path inside the root")
)

// Error is a refusal to resolve Path because of its element Elem.
type Error struct {
	Path string // the full path asked for
	Elem string // the part of the relative path that is at fault
	Err  error  // ErrSymlink, ErrNotDir or ErrEscape
}

func (e *Error) Error() string {
	if errors.Is(e.Err, ErrSymlink) {
		return fmt.Sprintf("refusing %q: %q is a symbolic link (links below the root are never followed)", e.Path, e.Elem)
	}
	return fmt.Sprintf("refusing %q: %q %v", e.Path, e.Elem, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Refused reports whether err is a certain refusal by this package (a link,
// a file where a folder must be, a path leaving its root): no retry helps.
func Refused(err error) bool {
	return errors.Is(err, ErrSymlink) || errors.Is(err, ErrNotDir) || errors.Is(err, ErrEscape)
}

// Open opens root/rel like os.OpenFile, following no link below root. A
// link as the last element is refused too, unless flag has both O_PATH and
// O_NOFOLLOW (then the link itself is opened). A FIFO is opened without
// blocking when flag has O_NONBLOCK; check the mode before reading.
func Open(root, rel string, flag int, perm os.FileMode) (*os.File, error) {
	p, err := split(root, rel)
	if err != nil {
		return nil, err
	}
	fd, err := p.open(flag|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p.full()), nil
}

// Lstat describes root/rel without following any link; a link as the last
// element is described as a link.
func Lstat(root, rel string) (os.FileInfo, error) {
	f, err := Open(root, rel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, &os.PathError{Op: "lstat", Path: f.Name(), Err: err}
	}
	return info, nil
}

// MkdirAll creates the folder root/rel and any missing parents below root
// with perm (before umask), following no link below root. A missing root
// is created too (the root is trusted, like os.MkdirAll).
func MkdirAll(root, rel string, perm os.FileMode) error {
	p, err := split(root, rel)
	if err != nil {
		return err
	}
	fd, err := p.walk(len(p.elems), true, perm)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// path is root plus a checked relative path split into its elements.
type path struct {
	root  string
	rel   string
	elems []string
}

func split(root, rel string) (path, error) {
	p := path{root: root, rel: rel}
	if root == "" {
		return p, &Error{Path: rel, Elem: root, Err: errors.New("the root is empty")}
	}
	clean := filepath.Clean(rel)
	if rel == "" || !filepath.IsLocal(rel) || clean != strings.TrimSuffix(rel, "/") {
		return p, &Error{Path: p.full(), Elem: rel, Err: ErrEscape}
	}
	if clean != "." {
		p.elems = strings.Split(clean, "/")
	}
	return p, nil
}

func (p path) full() string { return filepath.Join(p.root, p.rel) }

// prefix is the relative path up to and including element i, for errors.
func (p path) prefix(i int) string { return strings.Join(p.elems[:i+1], "/") }

// refuse classifies why element i could not be opened as asked (err came
// from openat with O_NOFOLLOW, which cannot say "link" clearly: ELOOP or
// ENOTDIR) by looking at the element itself in dirfd.
func (p path) refuse(dirfd, i int, err error) error {
	var st unix.Stat_t
	if serr := unix.Fstatat(dirfd, p.elems[i], &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil {
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return &Error{Path: p.full(), Elem: p.prefix(i), Err: ErrSymlink}
		case i < len(p.elems)-1 && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return &Error{Path: p.full(), Elem: p.prefix(i), Err: ErrNotDir}
		}
	}
	return &os.PathError{Op: "open", Path: p.full(), Err: err}
}

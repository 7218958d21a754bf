//go:build linux

package safepath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RemoveAll removes root/rel and everything below it, like os.RemoveAll,
// without following any link: a link among rel's parents is refused
// (ErrSymlink); a link at rel or inside the tree is removed as a link and
// its target left alone. Contents are removed with unlinkat relative to
// opened folders, never by path, so a folder swapped for a link midway is
// not followed either. A missing path is not an error. rel must name
// something below root, not root itself.
func RemoveAll(root, rel string) error {
	p, err := split(root, rel)
	if err != nil {
		return err
	}
	if len(p.elems) == 0 {
		return &Error{Path: p.full(), Elem: rel, Err: errors.New("is the root itself, which RemoveAll never removes")}
	}
	dirfd, err := p.parentFD()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return removeEntry(dirfd, p.elems[len(p.elems)-1], p.full())
}

// removeEntry removes name in dirfd: a folder with its contents, anything
// else (a link, a file) by unlinking it. full names it in errors.
func removeEntry(dirfd int, name, full string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "lstat", Path: full, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unlink(dirfd, name, full, 0)
	}
	if st.Mode&0o700 != 0o700 {
		// A job may leave a folder it cannot be emptied through (mode 000):
		// give the owner its rights back first, on the folder itself.
		if err := ownerRights(dirfd, name, st.Mode); err != nil {
			return &os.PathError{Op: "chmod", Path: full, Err: err}
		}
	}
	// A few rounds in case something is written into the folder meanwhile.
	for round := 0; ; round++ {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return unlink(dirfd, name, full, 0) // swapped for a link or file
		}
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: full, Err: err}
		}
		first := removeContents(os.NewFile(uintptr(fd), full))
		err = unlink(dirfd, name, full, unix.AT_REMOVEDIR)
		if err == nil || !errors.Is(err, unix.ENOTEMPTY) || round == 3 {
			if first != nil {
				return first
			}
			return err
		}
	}
}

// removeContents removes everything in the folder dir and closes it. It
// goes on after an error and returns the first.
func removeContents(dir *os.File) error {
	defer dir.Close()
	var first error
	for {
		names, err := dir.Readdirnames(256)
		for _, name := range names {
			if rerr := removeEntry(int(dir.Fd()), name, filepath.Join(dir.Name(), name)); rerr != nil && first == nil {
				first = rerr
			}
		}
		if err != nil || len(names) == 0 {
			if err != nil && !errors.Is(err, io.EOF) && first == nil {
				first = err
			}
			return first
		}
	}
}

// ownerRights adds read, write and search for the owner to the folder name
// in dirfd. The folder is opened without following a link (O_PATH needs no
// rights on it) and changed through its descriptor's /proc entry, so a
// folder swapped for a link meanwhile is never followed.
func ownerRights(dirfd int, name string, mode uint32) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode&0o7777|0o700)
}

func unlink(dirfd int, name, full string, flags int) error {
	err := unix.Unlinkat(dirfd, name, flags)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return &os.PathError{Op: "remove", Path: full, Err: err}
}

// Rename renames root/from to root/to, following no link below root in
// either path's folders (a link as from's last element is renamed as a
// link). to is replaced as rename(2) does.
func Rename(root, from, to string) error {
	src, err := split(root, from)
	if err != nil {
		return err
	}
	dst, err := split(root, to)
	if err != nil {
		return err
	}
	if len(src.elems) == 0 || len(dst.elems) == 0 {
		return &Error{Path: src.full(), Elem: from, Err: errors.New("cannot rename the root")}
	}
	srcDir, err := src.parentFD()
	if err != nil {
		return err
	}
	defer unix.Close(srcDir)
	dstDir, err := dst.parentFD()
	if err != nil {
		return err
	}
	defer unix.Close(dstDir)
	if err := unix.Renameat(srcDir, src.elems[len(src.elems)-1], dstDir, dst.elems[len(dst.elems)-1]); err != nil {
		return &os.LinkError{Op: "rename", Old: src.full(), New: dst.full(), Err: err}
	}
	return nil
}

// parentFD opens the folder holding the path's last element.
func (p path) parentFD() (int, error) {
	last := len(p.elems) - 1
	parent := path{root: p.root, rel: filepath.Dir(filepath.Clean(p.rel)), elems: p.elems[:last]}
	return parent.open(unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

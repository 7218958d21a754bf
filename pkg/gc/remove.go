package gc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// This file measures folders without following symbolic links, and finds
// what a removal would refuse, before pkg/safepath removes them.

// LinkError is a symbolic link found where a folder was expected on the way
// to what was to be removed. It is never followed.
type LinkError struct{ Path string }

func (e *LinkError) Error() string {
	return fmt.Sprintf("refusing to follow the symbolic link %s (a folder was expected there; nothing behind it was touched)", e.Path)
}

// treeStat is what removeTree found at root/rel.
type treeStat struct {
	Bytes   int64 // sizes of the files and links below, as lstat reports them
	Link    bool  // the last element was a symbolic link
	Missing bool  // nothing was there
}

// measure reports the size of root/rel without following any link: a link
// in an element before the last is a *LinkError naming it; the last
// element, if a link, is measured as a link.
func measure(root, rel string) (treeStat, error) {
	var st treeStat
	parent, name, err := openParent(root, rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			st.Missing = true
			return st, nil
		}
		return st, err
	}
	defer unix.Close(parent)
	var s unix.Stat_t
	if err := unix.Fstatat(parent, name, &s, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			st.Missing = true
			return st, nil
		}
		return st, pathError("lstat", filepath.Join(root, rel), err)
	}
	st.Link = s.Mode&unix.S_IFMT == unix.S_IFLNK
	if s.Mode&unix.S_IFMT != unix.S_IFDIR {
		st.Bytes = s.Size
		return st, nil
	}
	st.Bytes, err = walkDir(parent, name, filepath.Join(root, rel))
	return st, err
}

// walkDir measures the directory name in the directory parent; path names
// it in errors.
func walkDir(parent int, name, path string) (int64, error) {
	fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, ignoreMissing(pathError("open", path, err))
	}
	dir := os.NewFile(uintptr(fd), path) // closes fd
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("read folder %s: %w", path, err)
	}
	var total int64
	for _, n := range names {
		var s unix.Stat_t
		if err := unix.Fstatat(fd, n, &s, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return total, pathError("lstat", filepath.Join(path, n), err)
		}
		if s.Mode&unix.S_IFMT == unix.S_IFDIR {
			b, err := walkDir(fd, n, filepath.Join(path, n))
			total += b
			if err != nil {
				return total, err
			}
			continue
		}
		total += s.Size
	}
	return total, nil
}

// openParent opens the folder that holds rel's last element, walking from
// root one element at a time without following symbolic links. It returns
// that folder's descriptor and the last element's name.
func openParent(root, rel string) (int, string, error) {
	if rel == "" || rel == "." || !filepath.IsLocal(rel) {
		return -1, "", fmt.Errorf("refusing to remove %q below %s: want a path inside it", rel, root)
	}
	elems := strings.Split(filepath.Clean(rel), string(filepath.Separator))
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", pathError("open", root, err)
	}
	path := root
	for _, e := range elems[:len(elems)-1] {
		path = filepath.Join(path, e)
		next, err := openDirAt(fd, e, path)
		unix.Close(fd)
		if err != nil {
			return -1, "", err
		}
		fd = next
	}
	return fd, elems[len(elems)-1], nil
}

// openDirAt opens the folder name in dir without following a link; a link
// there is a *LinkError.
func openDirAt(dir int, name, path string) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nil
	}
	if err == unix.ELOOP || err == unix.ENOTDIR {
		var s unix.Stat_t
		if unix.Fstatat(dir, name, &s, unix.AT_SYMLINK_NOFOLLOW) == nil && s.Mode&unix.S_IFMT == unix.S_IFLNK {
			return -1, &LinkError{Path: path}
		}
	}
	return -1, pathError("open", path, err)
}

// openDir opens root/rel as a folder without following a link in rel.
func openDir(root, rel string) (int, error) {
	parent, name, err := openParent(root, rel)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	return openDirAt(parent, name, filepath.Join(root, rel))
}

func pathError(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

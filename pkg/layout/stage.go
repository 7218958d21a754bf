package layout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Stage puts a copy of the document src at dst, for a run's input folder
// (which must exist). It clones the file where the filesystem can (copy on
// write: instant, no extra space) and copies it otherwise; it never hard
// links, so an engine that writes to its input cannot change the stored
// document. An existing dst is replaced. src must be a regular file, not a
// symbolic link: a link could point anywhere.
func Stage(src, dst string) error {
	if err := stage(src, dst); err != nil {
		return fmt.Errorf("stage %s as %s: %w", src, dst, err)
	}
	return nil
}

func stage(src, dst string) error {
	in, info, err := openRegular(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := removeOld(dst, src, info); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := fill(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// openRegular opens path, which must be a regular file and not a symbolic
// link.
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	before, err := os.Lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("the document is not a regular file (%s)", before.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !os.SameFile(before, info) {
		err = errors.New("the document was replaced while it was being staged")
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

// removeOld removes dst, unless it is the very directory entry of src.
func removeOld(dst, src string, srcInfo fs.FileInfo) error {
	old, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if os.SameFile(old, srcInfo) && sameEntry(src, dst) {
		return errors.New("refusing to stage a document onto itself")
	}
	return os.Remove(dst)
}

// sameEntry reports whether paths a and b name one directory entry.
func sameEntry(a, b string) bool {
	if filepath.Base(a) != filepath.Base(b) {
		return false
	}
	da, errA := os.Stat(filepath.Dir(a))
	db, errB := os.Stat(filepath.Dir(b))
	return errA == nil && errB == nil && os.SameFile(da, db)
}

// fill writes in's content to the new, empty file out.
func fill(out, in *os.File) error {
	if err := out.Chmod(0o644); err != nil { // whatever the umask
		return err
	}
	if clone(out, in) == nil {
		return nil
	}
	// os.File's ReadFrom lets the kernel copy (copy_file_range on Linux).
	_, err := io.Copy(out, in)
	return err
}

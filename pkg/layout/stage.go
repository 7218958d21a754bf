package layout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/safepath"
)

// ErrNotRegular marks a document that is not a regular file (a folder, a
// FIFO, a device): staging it can never succeed.
var ErrNotRegular = errors.New("not a regular file")

// Place is a path below a shared root (documents, runs). Everything below
// Root is opened without following symbolic links; an empty Root means the
// path's own folder, so only its last element is protected.
type Place struct {
	Root string
	Path string
}

// split returns the root and the path relative to it.
func (p Place) split() (string, string, error) {
	if p.Root == "" {
		return filepath.Dir(p.Path), filepath.Base(p.Path), nil
	}
	rel, err := filepath.Rel(p.Root, p.Path)
	if err != nil || rel == "." || !filepath.IsLocal(rel) {
		return "", "", fmt.Errorf("%q is not inside its root %q: %w", p.Path, p.Root, safepath.ErrEscape)
	}
	return p.Root, rel, nil
}

// Stage puts a copy of the document src at dst, for a run's input folder
// (which must exist). It clones the file where the filesystem can (copy on
// write: instant, no extra space) and copies it otherwise; it never hard
// links, so an engine that writes to its input cannot change the stored
// document. An existing dst is replaced. No symbolic link below either
// root is followed (a link could point anywhere): such a path fails with
// safepath.ErrSymlink, and a src that is not a regular file with
// ErrNotRegular.
func Stage(src, dst Place) error {
	if err := stage(src, dst); err != nil {
		return fmt.Errorf("stage %s as %s: %w", src.Path, dst.Path, err)
	}
	return nil
}

func stage(src, dst Place) error {
	srcRoot, srcRel, err := src.split()
	if err != nil {
		return err
	}
	dstRoot, dstRel, err := dst.split()
	if err != nil {
		return err
	}
	if filepath.Join(srcRoot, srcRel) == filepath.Join(dstRoot, dstRel) {
		return errors.New("refusing to stage a document onto itself")
	}
	in, err := openRegular(srcRoot, srcRel)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := safepath.RemoveAll(dstRoot, dstRel); err != nil {
		return err
	}
	out, err := safepath.Open(dstRoot, dstRel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := fill(out, in); err != nil {
		out.Close()
		_ = safepath.RemoveAll(dstRoot, dstRel)
		return err
	}
	if err := out.Close(); err != nil {
		_ = safepath.RemoveAll(dstRoot, dstRel)
		return err
	}
	return nil
}

// openRegular opens root/rel, which must be a regular file reached without
// any link. O_NONBLOCK keeps a FIFO from blocking the open.
func openRegular(root, rel string) (*os.File, error) {
	f, err := safepath.Open(root, rel, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("the document is %w (%s)", ErrNotRegular, typeName(info.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
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

// CopyFile makes the new file dst a copy of the regular file src with mode
// perm: a copy-on-write clone where the filesystem offers one, else a copy.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if err := fill(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(perm); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// CopyTree copies the folder src into dst with the same symlinks (a
// link into src points into dst instead). Files are hard links when link
// (a copy where the filesystem refuses one, as across filesystems), else
// copies (clones where the filesystem can).
func CopyTree(src, dst string, link bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			to, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if inside, err := filepath.Rel(src, to); err == nil && filepath.IsAbs(to) && !strings.HasPrefix(inside, "..") {
				to = filepath.Join(dst, inside)
			}
			return os.Symlink(to, target)
		case d.Type().IsRegular():
			if link && os.Link(path, target) == nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return CopyFile(path, target, info.Mode().Perm())
		}
		return nil
	})
}

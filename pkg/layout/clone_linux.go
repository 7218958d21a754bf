package layout

import (
	"os"
	"syscall"
)

// ficlone is the FICLONE ioctl, _IOW(0x94, 9, int): make dst share src's
// blocks, copy on write (Btrfs, XFS, bcachefs, ...).
const ficlone = 0x40049409

// clone makes dst a copy-on-write clone of src, or fails when the
// filesystem cannot (or src and dst are on different filesystems).
func clone(dst, src *os.File) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, dst.Fd(), ficlone, src.Fd())
	if errno != 0 {
		return errno
	}
	return nil
}

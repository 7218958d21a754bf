package jobrunner

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// A full disk is often gone again by the time the failing tool exits: it
// removes its temporary files first, and some tools hide the error (python
// -m venv reports only that ensurepip "returned non-zero exit status 1").
// So the free space of the job's folders is sampled while the job runs,
// and a failed job that saw one of them full says which and is retried.

// spaceSampleEvery is how often the folders' free space is read: one
// statfs each, and a failing pip leaves the disk full for a few tenths
// of a second before it cleans up.
const spaceSampleEvery = 25 * time.Millisecond

// fullBelow is the free space under which a filesystem counts as full:
// less than one write of most tools' buffers.
const fullBelow = 256 << 10

// watchedFolder is one of the worker's folders a job writes below.
type watchedFolder struct {
	name, path string // "venvs", "/var/lib/ade/venvs"
}

// fullDisk is a folder seen on a full filesystem.
type fullDisk struct {
	folder     watchedFolder
	mountPoint string
	free       uint64 // bytes available when seen
	size       uint64 // the filesystem's size in bytes
	noInodes   bool   // full of files, not of bytes
	// freedSince: free was read after the failure, which the failing
	// tool's clean-up had already undone.
	freedSince bool
}

func (d *fullDisk) String() string {
	what := fmt.Sprintf("%s free of %s", bytesText(d.free), bytesText(d.size))
	if d.freedSince {
		what += " since the failing tool's clean-up"
	}
	if d.noInodes {
		what = "no free inodes"
	}
	return fmt.Sprintf("the %s folder %s is on a full disk (mount point %s, %s)", d.folder.name, d.folder.path, d.mountPoint, what)
}

// spaceWatch samples the free space of one folder per filesystem.
type spaceWatch struct {
	folders []watchedFolder
	mu      sync.Mutex
	full    *fullDisk // the first seen
}

// watchSpace samples the folders (those that exist, one per filesystem)
// until stop, which returns the first full one seen (nil if none).
func watchSpace(ctx context.Context, folders []watchedFolder) (stop func() *fullDisk) {
	w := &spaceWatch{folders: onePerFilesystem(folders)}
	if len(w.folders) == 0 {
		return func() *fullDisk { return nil }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(spaceSampleEvery)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() *fullDisk {
		cancel()
		<-done
		w.sample() // a job shorter than one interval is seen at its end
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.full
	}
}

func (w *spaceWatch) sample() {
	w.mu.Lock()
	seen := w.full != nil
	w.mu.Unlock()
	if seen {
		return
	}
	for _, f := range w.folders {
		if d := checkFull(f); d != nil {
			w.mu.Lock()
			w.full = d
			w.mu.Unlock()
			return
		}
	}
}

// checkFull reads f's filesystem, and describes it when it is full.
func checkFull(f watchedFolder) *fullDisk {
	d := readDisk(f)
	if d == nil || d.free >= fullBelow && !d.noInodes {
		return nil
	}
	d.mountPoint = mountPoint(f.path)
	return d
}

// readDisk describes f's filesystem as it is now, but for its mount point
// (a walk up the folders, read only for a disk reported); nil when it
// cannot be read.
func readDisk(f watchedFolder) *fullDisk {
	var st unix.Statfs_t
	if unix.Statfs(f.path, &st) != nil {
		return nil
	}
	bsize := uint64(st.Bsize)
	if st.Frsize > 0 {
		bsize = uint64(st.Frsize)
	}
	return &fullDisk{folder: f, free: st.Bavail * bsize, size: st.Blocks * bsize, noInodes: st.Files > 0 && st.Ffree == 0}
}

// diskOf describes the folder of folders that holds path (an absolute
// path a failed write named), with its filesystem as it is now; nil when
// none holds it.
func diskOf(folders []watchedFolder, path string) *fullDisk {
	if !filepath.IsAbs(path) {
		return nil
	}
	path = filepath.Clean(path)
	for _, f := range folders {
		if f.path == "" || (path != f.path && !strings.HasPrefix(path, filepath.Clean(f.path)+"/")) {
			continue
		}
		d := readDisk(f)
		if d != nil {
			d.mountPoint, d.freedSince = mountPoint(f.path), true
		}
		return d
	}
	return nil
}

// onePerFilesystem keeps the folders that exist, the first of each
// filesystem (device).
func onePerFilesystem(folders []watchedFolder) []watchedFolder {
	seen := map[uint64]bool{}
	var out []watchedFolder
	for _, f := range folders {
		if f.path == "" {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(f.path, &st) != nil || seen[st.Dev] {
			continue
		}
		seen[st.Dev] = true
		out = append(out, f)
	}
	return out
}

// mountPoint is the top folder of path's filesystem: the highest ancestor
// on the same device.
func mountPoint(path string) string {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return "unknown"
	}
	dir := filepath.Clean(path)
	for dir != "/" {
		parent := filepath.Dir(dir)
		var pst syscall.Stat_t
		if syscall.Stat(parent, &pst) != nil || pst.Dev != st.Dev {
			return dir
		}
		dir = parent
	}
	return "/"
}

// existingParent is path, or its nearest ancestor that exists (a file
// that could not be made for want of space does not).
func existingParent(path string) string {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil || p == filepath.Dir(p) {
			return p
		}
	}
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// jobFolders are the worker's folders a job may fill: its venvs, runs and
// documents roots (those set), named as operators configure them; the
// folder the job writes most to first.
func jobFolders(spec *jobspec.Spec) []watchedFolder {
	r := spec.Roots
	venvs, runs := watchedFolder{"venvs", r.Venvs}, watchedFolder{"runs", r.Runs}
	if spec.Kind == jobspec.KindBuild {
		return []watchedFolder{venvs, runs, {"documents", r.Documents}}
	}
	return []watchedFolder{runs, venvs, {"documents", r.Documents}}
}

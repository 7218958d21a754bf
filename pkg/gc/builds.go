package gc

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/store"
)

// builds removes unused build folders and leftover temporary build folders.
func (c *Collector) builds(ctx context.Context, now time.Time, res *Result) error {
	inUse, err := c.store.BuildsInUse(ctx)
	if err != nil {
		return err
	}
	after := ""
	for {
		page, err := c.store.Builds(ctx, after, batch)
		if err != nil {
			return err
		}
		for _, b := range page {
			if err := c.build(ctx, b, inUse[b.ID], now, res); err != nil {
				return err
			}
		}
		if len(page) < batch {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// build handles one build's folder; an error is a database error.
func (c *Collector) build(ctx context.Context, b store.GCBuild, inUse string, now time.Time, res *Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := c.layout.BuildDir(b.WorkspaceID, b.ConfigurationID, b.ID)
	if err != nil {
		return nil // an id the planner refuses never had a folder
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c.tmpFolders(dir, now, res)
	if c.policy.VenvTTL <= 0 || b.Status == store.StatusQueued || b.Status == store.StatusBuilding || inUse != "" {
		return nil
	}
	runs, err := c.store.BuildLastUse(ctx, b.ID)
	if err != nil {
		return err
	}
	ok, why := venvVerdict(b, inUse, buildLastUse(b, runs), now, c.policy.VenvTTL)
	if !ok {
		return nil
	}
	return c.removeVenv(ctx, b, dir, why, res)
}

// removeVenv removes a build folder under its build lock. A run claimed
// between listing and now must keep its venv, so the venv's ready marker is
// hidden first and the database asked again: a run claimed before the
// hiding shows up now (and the marker comes back); one claimed after finds
// no ready venv and waits for the lock to rebuild it.
func (c *Collector) removeVenv(ctx context.Context, b store.GCBuild, dir, why string, res *Result) error {
	rel, _ := filepath.Rel(c.layout.Venvs, dir)
	unlock, ok, err := lockBuild(c.layout.Venvs, rel, !res.DryRun)
	if err != nil {
		res.Items = append(res.Items, Item{Target: Venv, Path: dir, Detail: why, Err: err})
		return nil
	}
	if !ok {
		return nil // a build or a rebuild is at work there
	}
	defer unlock()
	if res.DryRun {
		if it, found := c.remove(Venv, c.layout.Venvs, dir, why, true); found {
			res.Items = append(res.Items, it)
		}
		return nil
	}
	restore := hideMarker(c.layout.Venvs, filepath.Join(rel, ".venv"))
	defer restore(false)
	used, err := c.store.BuildsInUse(ctx)
	var status store.Status
	if err == nil {
		status, err = c.store.BuildStatus(ctx, b.ID)
	}
	if err != nil || used[b.ID] != "" || status == store.StatusQueued || status == store.StatusBuilding {
		restore(true)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	if it, found := c.remove(Venv, c.layout.Venvs, dir, why, false); found {
		res.Items = append(res.Items, it)
	}
	return nil
}

// tmpFolders removes the .venv.tmp-* folders in a build folder that are
// older than the policy allows, under the build lock (skipped while a build
// holds it). A symbolic link on the way is left for removeVenv to report.
func (c *Collector) tmpFolders(dir string, now time.Time, res *Result) {
	rel, _ := filepath.Rel(c.layout.Venvs, dir)
	fd, err := openDir(c.layout.Venvs, rel)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), dir)
	names, _ := f.Readdirnames(-1)
	var old []string
	var why []string
	for _, n := range names {
		var s unix.Stat_t
		if !strings.HasPrefix(n, layout.VenvName+layout.TempMark) || unix.Fstatat(fd, n, &s, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		if ok, w := tmpVerdict(time.Unix(s.Mtim.Unix()), now, c.policy.TmpAge); ok {
			old, why = append(old, n), append(why, w)
		}
	}
	f.Close()
	if len(old) == 0 {
		return
	}
	unlock, ok, err := lockBuild(c.layout.Venvs, rel, !res.DryRun)
	if err != nil || !ok {
		return
	}
	defer unlock()
	for i, n := range old {
		if it, found := c.remove(BuildTmp, c.layout.Venvs, filepath.Join(dir, n), why[i], res.DryRun); found {
			res.Items = append(res.Items, it)
		}
	}
}

// lockBuild takes a build folder's lock without waiting; ok is false when a
// build or a rebuild holds it. Without create, a missing lock file counts
// as free (a dry run creates nothing).
func lockBuild(root, rel string, create bool) (unlock func(), ok bool, err error) {
	dir, err := openDir(root, rel)
	if err != nil {
		return nil, false, err
	}
	defer unix.Close(dir)
	flags := unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if create {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Openat(dir, buildLockName, flags, 0o644)
	if err == unix.ENOENT && !create {
		return func() {}, true, nil
	}
	if err != nil {
		return nil, false, pathError("open", filepath.Join(root, rel, buildLockName), err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if err == unix.EWOULDBLOCK {
			return nil, false, nil
		}
		return nil, false, pathError("lock", filepath.Join(root, rel, buildLockName), err)
	}
	return func() { unix.Close(fd) }, true, nil
}

// hideMarker renames the ready marker of the venv root/rel so no run starts
// on it; the returned function puts it back. Without a marker (or a venv)
// there is nothing to hide. restore(true) puts it back; restore(false)
// only lets go of the folder. Only the first call counts.
func hideMarker(root, rel string) (restore func(putBack bool)) {
	fd, err := openDir(root, rel)
	if err != nil {
		return func(bool) {}
	}
	hidden := readyMarker + ".gc-hidden"
	if unix.Renameat(fd, readyMarker, fd, hidden) != nil {
		unix.Close(fd)
		return func(bool) {}
	}
	done := false
	return func(putBack bool) {
		if done {
			return
		}
		done = true
		if putBack {
			_ = unix.Renameat(fd, hidden, fd, readyMarker)
		}
		unix.Close(fd)
	}
}

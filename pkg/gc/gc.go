// Package gc is the garbage collector: it removes what the worker leaves on
// disk once nobody needs it (run folders of finished runs, build
// environments no run has used for a while, temporary folders of
// interrupted builds). It never deletes a database row (the ADE API owns
// that history), never follows a symbolic link, and takes a lock so that one
// pass runs at a time across every supervisor of a database.
package gc

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/safepath"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// Target is a kind of folder the collector removes; it is the label of
// ade_worker_gc_removed_total.
type Target string

// The targets.
const (
	RunFolder Target = "run_folder" // <runs>/<workspace>/runs/<run>
	Venv      Target = "venv"       // <venvs>/<workspace>/<configuration>/<build>
	BuildTmp  Target = "build_tmp"  // <build folder>/.venv.tmp-*
)

// Targets lists every target, in report order.
var Targets = []Target{RunFolder, Venv, BuildTmp}

// Item is one folder a pass removed, would remove (dry run), or could not.
type Item struct {
	Target Target
	Path   string
	Bytes  int64  // sizes of its files, as found before removal
	Detail string // why it qualified
	Err    error  // not removed: a symbolic link refused, or an I/O error
}

// Result is what one pass did.
type Result struct {
	DryRun bool
	// Skipped is set when another pass held the lock: nothing was done.
	Skipped bool
	Items   []Item
}

// Removed counts the folders of a target that were removed (or, in a dry
// run, would be).
func (r *Result) Removed(t Target) (n int, bytes int64) {
	for _, it := range r.Items {
		if it.Target == t && it.Err == nil {
			n++
			bytes += it.Bytes
		}
	}
	return n, bytes
}

// NotRemoved counts the items that were refused or failed.
func (r *Result) NotRemoved() int {
	n := 0
	for _, it := range r.Items {
		if it.Err != nil {
			n++
		}
	}
	return n
}

// batch is how many rows one query reads.
const batch = 500

// readyMarker is the file pkg/jobrunner writes into a finished venv; a venv
// without it is not used by runs (they rebuild it under the build lock).
const readyMarker = "ade-build.json"

// buildLockName is the lock file pkg/jobrunner holds in a build folder while
// it builds or rebuilds the venv there.
const buildLockName = ".build.lock"

// Collector finds and removes what is no longer needed.
type Collector struct {
	store  *store.Store
	layout layout.Layout
	policy Policy
	log    zerolog.Logger

	// OnPass, when set, gets the result of every pass Run makes (metrics).
	OnPass func(*Result)

	// runsFrom is where the next pass starts reading finished runs: the
	// runs before it were handled by an earlier pass of this collector, so
	// a million old rows are not read again every hour. A row whose
	// completion time is rewritten into the past is caught by the full
	// scan made once every fullScanEvery (lastFullScan).
	runsFrom     time.Time
	lastFullScan time.Time
}

// fullScanEvery is how often a pass reads every finished run again.
const fullScanEvery = 24 * time.Hour

// New makes a collector for the folders of lay.
func New(st *store.Store, lay layout.Layout, p Policy, log zerolog.Logger) *Collector {
	return &Collector{store: st, layout: lay, policy: p, log: log}
}

// Pass removes (or, when dryRun, lists) everything the policy allows, once,
// holding the gc lock. When another pass holds the lock it does nothing
// and returns a Result with Skipped set.
func (c *Collector) Pass(ctx context.Context, now time.Time, dryRun bool) (*Result, error) {
	release, ok, err := c.store.TryGCLock(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{DryRun: dryRun, Skipped: !ok}
	if !ok {
		return res, nil
	}
	defer release()
	if err := c.runs(ctx, now, res); err != nil {
		return res, err
	}
	return res, c.builds(ctx, now, res)
}

// Run makes a pass every interval until ctx ends, the first one a minute
// after start (or after the interval, when shorter), and logs each.
func (c *Collector) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	if tick.Sleep(ctx, min(interval, time.Minute)) != nil {
		return
	}
	c.scheduledPass(ctx)
	tick.Every(ctx, interval, nil, func(ctx context.Context) bool {
		c.scheduledPass(ctx)
		return true
	})
}

// scheduledPass makes one pass, logs it and reports it to OnPass.
func (c *Collector) scheduledPass(ctx context.Context) {
	start := time.Now()
	res, err := c.Pass(ctx, start, false)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.Error().Err(err).Msg("gc pass failed; will retry at the next interval")
	case res != nil && res.Skipped:
		c.log.Debug().Msg("gc pass skipped: another supervisor holds the gc lock")
	case res != nil:
		c.logPass(res, time.Since(start))
	}
	if res != nil && !res.Skipped && c.OnPass != nil {
		c.OnPass(res)
	}
}

// logPass writes one line with the counts, and one warning per folder that
// could not be removed.
func (c *Collector) logPass(res *Result, took time.Duration) {
	ev := c.log.Info()
	for _, t := range Targets {
		n, b := res.Removed(t)
		ev = ev.Int(string(t)+"_removed", n).Int64(string(t)+"_bytes", b)
	}
	ev.Int("not_removed", res.NotRemoved()).Int64("duration_ms", took.Milliseconds()).Msg("gc pass")
	for _, it := range res.Items {
		if it.Err != nil {
			c.log.Warn().Str("target", string(it.Target)).Str("path", it.Path).Err(it.Err).Msg("gc did not remove a folder")
		}
	}
}

// runs removes the folders of runs that finished before the run TTL.
func (c *Collector) runs(ctx context.Context, now time.Time, res *Result) error {
	if c.policy.RunTTL <= 0 {
		return nil
	}
	cutoff := now.Add(-c.policy.RunTTL)
	resume := cutoff // the next pass starts here, or at the oldest failure
	from := c.runsFrom
	full := now.Sub(c.lastFullScan) >= fullScanEvery
	if full {
		from = time.Time{}
	}
	cur := c.store.RunsFrom(from)
	for {
		page, next, err := c.store.FinishedRuns(ctx, cutoff, cur, batch)
		if err != nil {
			return err
		}
		for _, r := range page {
			it, found := c.runFolder(r, now, res.DryRun)
			if !found {
				continue
			}
			if it.Err != nil && r.DoneAt.Time.Before(resume) {
				resume = r.DoneAt.Time
			}
			res.Items = append(res.Items, it)
		}
		if len(page) < batch || ctx.Err() != nil {
			break
		}
		cur = next
	}
	if !res.DryRun && ctx.Err() == nil {
		// An hour of overlap: a row may be written with a time a little
		// in the past.
		c.runsFrom = resume.Add(-time.Hour)
		if full {
			c.lastFullScan = now
		}
	}
	return ctx.Err()
}

// runFolder removes one finished run's folder; found is false when there is
// nothing to remove (the usual case once a pass has removed it).
func (c *Collector) runFolder(r store.FinishedRun, now time.Time, dryRun bool) (Item, bool) {
	ok, why := runVerdict(r, now, c.policy.RunTTL)
	if !ok {
		return Item{}, false
	}
	dir, err := c.layout.RunDir(r.WorkspaceID, r.ID)
	if err != nil {
		return Item{}, false // an id the planner refuses never had a folder
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return Item{}, false
	}
	return c.remove(RunFolder, c.layout.Runs, dir, why, dryRun)
}

// remove removes (or measures) the folder path below root without
// following links; found is false when nothing was there.
func (c *Collector) remove(t Target, root, path, why string, dryRun bool) (Item, bool) {
	it := Item{Target: t, Path: path, Detail: why}
	rel, err := filepath.Rel(root, path)
	if err != nil {
		it.Err = err
		return it, true
	}
	st, err := measure(root, rel)
	if err == nil && !st.Missing && !dryRun {
		err = safepath.RemoveAll(root, rel)
	}
	it.Bytes, it.Err = st.Bytes, err
	if st.Link && err == nil {
		it.Detail += "; it was a symbolic link: only the link goes, never what it points to"
	}
	return it, !st.Missing || err != nil
}

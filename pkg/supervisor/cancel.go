package supervisor

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/safepath"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// Cancelling a job is writing its row (status 'cancelled', no claim), by the
// ADE API or `supervisor cancel`. A queued job is then never claimed. For a
// running job the supervisor that runs it learns of it by a PostgreSQL
// NOTIFY, by a check of its own running jobs (every cancelPoll, and on every
// SQLite file change), or when a heartbeat or fenced write finds the row no
// longer running; it stops the job's processes, writes nothing more about
// the job (the cancel wins), and ends it here as cancelled.

// cancelPoll is how often the supervisor checks its running jobs' rows.
// Where the store names cancels as they happen (PostgreSQL's NOTIFY) this is
// a backstop; elsewhere (SQLite) it is the bound on how late a cancel is
// seen (file changes make it faster still).
func cancelPoll(namesCancels bool) time.Duration {
	if namesCancels {
		return 3 * time.Second
	}
	return time.Second
}

// cancelCheckGap spaces checks that file changes trigger: a busy SQLite
// file changes many times a second.
const cancelCheckGap = 50 * time.Millisecond

// cancelSignals carry cancels seen by the watcher to watchCancels.
type cancelSignals struct {
	// buildCancelled: some build was cancelled; fail its queued runs.
	buildCancelled atomic.Bool
	check          chan struct{} // look at every running job's row now
}

// cancelSeen is the watcher's callback (see store.WatchQueue): a named job
// is stopped at once if it runs here; a zero ref asks for a check of all.
func (s *Supervisor) cancelSeen(ref store.JobRef) {
	if ref.ID != "" {
		if l, ok := s.leases.get(ref); ok {
			s.stopCancelled(l.log, l, "notify")
		}
		if ref.Kind == store.KindBuild {
			s.cancels.buildCancelled.Store(true)
		} else {
			return
		}
	}
	select {
	case s.cancels.check <- struct{}{}:
	default:
	}
}

// watchCancels checks the rows of the jobs this supervisor runs, every
// cancelPoll and whenever cancelSeen asks, until ctx ends.
func (s *Supervisor) watchCancels(ctx context.Context) {
	tick.Every(ctx, cancelPoll(s.store.NamesCancels()), s.cancels.check, func(ctx context.Context) bool {
		s.checkCancels(ctx)
		return tick.Sleep(ctx, cancelCheckGap) == nil
	})
}

// checkCancels stops every running job whose row is cancelled: primary-key
// lookups of this supervisor's own jobs, nothing when none runs.
func (s *Supervisor) checkCancels(ctx context.Context) {
	if s.cancels.buildCancelled.Swap(false) {
		if _, err := s.store.FailRunsOfFailedBuilds(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("cannot fail the runs of a cancelled build; cleanup will")
		}
	}
	refs := s.leases.refs()
	if len(refs) == 0 {
		return
	}
	cancelled, err := s.store.Cancelled(ctx, refs)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug().Err(err).Msg("cannot check running jobs for cancels; will retry")
		}
		return
	}
	for _, ref := range cancelled {
		if l, ok := s.leases.get(ref); ok {
			s.stopCancelled(l.log, l, "poll")
		}
	}
}

// stopCancelled stops a job whose row was seen cancelled; via names how it
// was seen. Only the first sighting logs.
func (s *Supervisor) stopCancelled(log zerolog.Logger, l *lease, via string) {
	if l.requestCancel() {
		log.Info().Str("seen_by", via).Msg("cancel seen: stopping the job's processes")
	}
}

// rowCancelled re-reads a job's status after a fenced write or a renewal
// found the job no longer ours: a cancelled row is a cancel, anything else
// a lost lease. Three tries: a read that keeps failing counts as a loss.
func (s *Supervisor) rowCancelled(f store.Fence) bool {
	r := s.waits
	r.First, r.Max, r.Jitter, r.Tries = 200*time.Millisecond, time.Second, 0.2, 3
	var status store.Status
	_, _, err := r.Do(func(int) (bool, error) {
		ctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		var err error
		status, err = s.queue.JobStatus(ctx, f.Kind, f.ID)
		return err != nil && !errors.Is(err, store.ErrNotFound), err
	})
	return err == nil && status == store.StatusCancelled
}

// refused is how a job goes on after a fenced write of it found the lease
// gone (err wraps store.ErrLeaseLost): when its row was cancelled it is a
// cancel (true: the caller ends the job as cancelled); otherwise another
// worker holds the job, and the loss is logged here.
func (s *Supervisor) refused(log zerolog.Logger, l *lease, err error) (cancelled bool) {
	if s.rowCancelled(l.fence) {
		l.requestCancel()
		return true
	}
	log.Warn().Err(err).Str("outcome", telemetry.OutcomeLeaseLost).Msg("lease lost before the write landed; the job's new owner decides")
	return false
}

// confirmCancelled is how a job whose child was stopped for a cancel ends:
// when the re-read row is cancelled it ends as cancelled; otherwise (the
// row changed again) the claim is handed back, as on shutdown.
func (s *Supervisor) confirmCancelled(log zerolog.Logger, l *lease) ending {
	var status store.Status
	err := s.persist(log, l, "read the job's status", func() (err error) {
		status, err = s.store.JobStatus(context.Background(), l.fence.Kind, l.fence.ID)
		return err
	})
	if err == nil && status == store.StatusCancelled {
		return ending{event: store.EventCancel}
	}
	return ending{event: store.EventHandBack, message: "Worker stopped the job for a cancel the row no longer shows; job handed back"}
}

// endCancelled is the one place a job ends as cancelled:
// its row was read back cancelled, the worker has written nothing about it
// since, and now appends the terminal event the row agrees with. A
// cancelled build's queued runs are failed now rather than at the next
// cleanup.
func (s *Supervisor) endCancelled(log zerolog.Logger, l *lease, spec *jobspec.Spec, started time.Time) {
	f := l.fence
	l.outcome = telemetry.OutcomeCancelled
	log.Info().Str("status", string(store.StatusCancelled)).Str("outcome", telemetry.OutcomeCancelled).
		Float64("duration_ms", float64(time.Since(started).Microseconds())/1000).
		Msg("job cancelled: its processes are stopped and the worker wrote nothing more about it")
	if f.Kind == store.KindBuild {
		if _, err := s.store.FailRunsOfFailedBuilds(context.Background()); err != nil {
			log.Warn().Err(err).Msg("cannot fail the runs of the cancelled build; cleanup will")
		}
		removeBuildLeftovers(log, spec)
	}
	appendEvent(log, spec, "warning", completeEvent(f.Kind), kindTitle(f.Kind)+" cancelled",
		terminalData(store.StatusCancelled, nil, "", f.Attempt))
}

// requestCancel records that the job's row was cancelled and stops its
// child if one runs; it reports whether this was the first request.
func (l *lease) requestCancel() bool {
	l.cancelMu.Lock()
	defer l.cancelMu.Unlock()
	first := !l.cancelled
	l.cancelled = true
	if l.stopChild != nil {
		l.stopChild()
	}
	return first
}

func (l *lease) cancelRequested() bool {
	l.cancelMu.Lock()
	defer l.cancelMu.Unlock()
	return l.cancelled
}

// watchCancel has stop called on a cancel while the child runs (at once
// when the job is already cancelled); the returned func ends that.
func (l *lease) watchCancel(stop func()) (release func()) {
	l.cancelMu.Lock()
	defer l.cancelMu.Unlock()
	l.stopChild = stop
	if l.cancelled {
		stop()
	}
	return func() {
		l.cancelMu.Lock()
		defer l.cancelMu.Unlock()
		l.stopChild = nil
	}
}

// cancelGrace is how long a cancelled job's processes have between SIGTERM
// (the jobrunner then stops its engine) and SIGKILL of the whole tree. The
// usual grace of a stopped job (seconds) is too long for a cancel.
const cancelGrace = 500 * time.Millisecond

// treeKiller kills a jobrunner and every process under it (its engine, the
// engine's children, daemons the jobrunner adopted as their subreaper).
type treeKiller struct {
	mu    sync.Mutex
	proc  *os.Process // a pidfd on Linux: never a reused pid
	ended bool
}

// started records the jobrunner; called before anything can reap it.
func (k *treeKiller) started(pid int) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.proc = p
}

// exited disarms the killer once the jobrunner has been waited for.
func (k *treeKiller) exited() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ended = true
	if k.proc != nil {
		_ = k.proc.Release()
	}
}

// kill SIGKILLs the tree, descendants first so none is orphaned beyond
// reach, unless the jobrunner is already gone.
func (k *treeKiller) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ended || k.proc == nil || k.proc.Signal(syscall.Signal(0)) != nil {
		return
	}
	procs.KillDescendantsOf(k.proc.Pid)
	_ = k.proc.Kill()
}

// removeBuildLeftovers removes the temporary folders of a cancelled build
// (its half-made venv and its scratch folder): its jobrunner was stopped,
// maybe killed before it could, and no later build of a cancelled build
// would. Never through a link (safepath).
func removeBuildLeftovers(log zerolog.Logger, spec *jobspec.Spec) {
	if spec == nil || spec.Build == nil || spec.Roots.Venvs == "" {
		return
	}
	for _, dir := range layout.BuildTemps(spec.Build.VenvDir) {
		root, rel, err := jobspec.Split(spec.Roots.Venvs, dir)
		if err == nil {
			err = safepath.RemoveAll(root, rel)
		}
		if err != nil {
			log.Warn().Err(err).Str("path", dir).Msg("cannot remove the cancelled build's temporary folder; the garbage collector will")
		}
	}
}

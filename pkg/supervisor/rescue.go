package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// rescueBatch bounds the expired leases one pass writes, so a huge backlog
// cannot hold the write lock for long.
const rescueBatch = 500

// cleanupResult counts what one cleanup pass changed.
type cleanupResult struct {
	runsRequeued, runsFailed, buildsRequeued, buildsFailed int // expired leases
	buildsStuck, runsFailedByBuild                         int
}

// rescue re-queues (or fails) the jobs whose lease expired, on the
// database's clock: decided here, written in one statement per kind.
func (s *Supervisor) rescue(ctx context.Context) (cleanupResult, error) {
	var res cleanupResult
	if s.fleet.quiet.Load() {
		return res, nil // the last beat saw no lease that could expire
	}
	// Every pass, expired leases or not: the live holders are those whose
	// beat the leader saw move, which needs a reading before the clock
	// steps (holders.go).
	if err := s.holders.observe(ctx, s.store, s.cfg.WorkerID, s.cfg.LeaseSeconds); err != nil {
		return res, err
	}
	for _, kind := range []store.Kind{store.KindRun, store.KindBuild} {
		jobs, err := s.store.ExpiredLeases(ctx, kind, rescueBatch)
		if err != nil {
			return res, err
		}
		jobs = s.holders.rescuable(kind, jobs)
		requeued, failed, err := s.store.ExpireLeases(ctx, kind, expiryDecisions(kind, jobs, s.cfg.Backoff))
		if err != nil {
			return res, err
		}
		if kind == store.KindRun {
			res.runsRequeued, res.runsFailed = requeued, failed
		} else {
			res.buildsRequeued, res.buildsFailed = requeued, failed
		}
	}
	return res, nil
}

// goneRowsKept is how long the row of a supervisor that stopped refreshing
// it stays listed (as gone) before cleanup removes it.
const goneRowsKept = 24 * time.Hour

// cleanup is the full pass: expired leases, builds stuck without a lease
// past the build timeout, and queued runs whose build failed.
func (s *Supervisor) cleanup(ctx context.Context) {
	s.reportCleanup(s.cleanupPass(ctx))
}

func (s *Supervisor) cleanupPass(ctx context.Context) (cleanupResult, error) {
	res, err := s.rescue(ctx)
	if err != nil || s.fleet.quiet.Load() {
		// Quiet: no build building or queued, no run queued.
		if err == nil {
			err = s.removeGoneWorkers(ctx)
		}
		return res, err
	}
	stuck, err := s.store.FailUnleasedBuilds(ctx, s.cfg.BuildTimeout, stuckBuildMessage(s.cfg.BuildTimeout))
	if err != nil {
		return res, err
	}
	res.buildsStuck = stuck
	res.runsFailedByBuild, err = s.store.FailRunsOfFailedBuilds(ctx)
	if err != nil {
		return res, err
	}
	return res, s.removeGoneWorkers(ctx)
}

// goneSweepEvery is how often the leader removes the rows of supervisors
// gone for goneRowsKept: a row a day old can wait an hour more, and an idle
// fleet's cleanup then costs no transaction.
const goneSweepEvery = time.Hour

func (s *Supervisor) removeGoneWorkers(ctx context.Context) error {
	now := time.Now()
	if last := s.fleet.goneSwept.Load(); last != 0 && now.Sub(time.Unix(0, last)) < goneSweepEvery {
		return nil
	}
	if _, err := s.store.RemoveGoneWorkers(ctx, goneRowsKept); err != nil {
		return err
	}
	s.fleet.goneSwept.Store(now.UnixNano())
	return nil
}

// rescueOnly is the frequent pass between cleanups: expired leases only.
func (s *Supervisor) rescueOnly(ctx context.Context) {
	s.reportCleanup(s.rescue(ctx))
}

func (s *Supervisor) reportCleanup(res cleanupResult, err error) {
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.obs.DBOp("cleanup", err)
			s.log.Error().Err(err).Msg("cleanup failed; will retry")
		}
		return
	}
	s.observeCleanup(res)
	if res != (cleanupResult{}) {
		s.log.Info().Int("runs_requeued", res.runsRequeued).Int("runs_failed", res.runsFailed).
			Int("builds_requeued", res.buildsRequeued).Int("builds_failed", res.buildsFailed).
			Int("builds_stuck_failed", res.buildsStuck).
			Int("runs_failed_by_build", res.runsFailedByBuild).Msg("cleanup recovered jobs")
		s.wake()
	}
}

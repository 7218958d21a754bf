package store

import (
	"context"
	"time"
)

// Shorthands of the store's tests, never used by the worker: it claims
// both kinds in one ClaimJobs and renews every held lease in one
// RenewLeases.

// ClaimRuns atomically takes up to limit claimable runs for worker, leased
// for lease from the database's now.
func (s *Store) ClaimRuns(ctx context.Context, worker string, lease time.Duration, limit int) ([]ClaimedRun, error) {
	_, runs, err := s.ClaimJobs(ctx, worker, lease, 0, limit)
	return runs, err
}

// ClaimBuilds atomically takes up to limit queued builds for worker.
func (s *Store) ClaimBuilds(ctx context.Context, worker string, lease time.Duration, limit int) ([]ClaimedBuild, error) {
	builds, _, err := s.ClaimJobs(ctx, worker, lease, limit, 0)
	return builds, err
}

// Heartbeat extends the lease of one held job to lease from the database's
// now. It returns ErrLeaseLost when the job is no longer held under f.
func (s *Store) Heartbeat(ctx context.Context, f Fence, lease time.Duration) error {
	held, err := s.RenewLeases(ctx, f.Worker, lease, []Fence{f})
	if err != nil {
		return err
	}
	if !held[f] {
		return ErrLeaseLost
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"fmt"

	"gorm.io/gorm"
)

// StatusCount is how many jobs of a kind are in one status.
type StatusCount struct {
	Kind   Kind
	Status Status
	Count  int64
}

// JobSummary is one line of the recent jobs list.
type JobSummary struct {
	Kind         Kind
	ID           string
	Status       Status
	AttemptCount int
	ExitCode     sql.NullInt64
	ClaimedBy    sql.NullString
	ErrorMessage sql.NullString
	CreatedAt    Time
}

// Counts returns job counts by kind and status. It reads builds, then runs:
// a `migrate` that recreates the triggers locks them the other way round,
// and PostgreSQL may abort this read to break the deadlock; it is read
// again (seen in TestConcurrentMigrate).
func (s *Store) Counts(ctx context.Context) ([]StatusCount, error) {
	var out []StatusCount
	err := s.txRetried(ctx, func(tx *gorm.DB) error {
		out = nil
		return tx.Raw(`SELECT 'build' AS kind, status, COUNT(*) AS count FROM builds GROUP BY status
		UNION ALL SELECT 'run' AS kind, status, COUNT(*) AS count FROM runs GROUP BY status
		ORDER BY kind, status`).Scan(&out).Error
	})
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	return out, nil
}

// RecentJobs returns the newest n builds and runs, newest first.
func (s *Store) RecentJobs(ctx context.Context, n int) ([]JobSummary, error) {
	var out []JobSummary
	err := s.db.WithContext(ctx).Raw(`SELECT * FROM (
		SELECT 'build' AS kind, id, status, attempt_count, exit_code, claimed_by, error_message, created_at FROM builds
		UNION ALL
		SELECT 'run' AS kind, id, status, attempt_count, exit_code, claimed_by, error_message, created_at FROM runs
	) AS jobs ORDER BY created_at DESC, id LIMIT ?`, n).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list recent jobs: %w", err)
	}
	return out, nil
}

// RunRow is a run as job-spec and tests read it.
type RunRow struct {
	ClaimedRun
	Status Status
}

// GetRun reads one run as a claim would return it.
func (s *Store) GetRun(ctx context.Context, id string) (*RunRow, error) {
	var r RunRow
	err := first(s.db.WithContext(ctx).Raw(`SELECT `+runClaimColumns+`, status FROM runs WHERE id = ?`, id), &r)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// GetClaimableBuild reads one build as a claim would return it.
func (s *Store) GetClaimableBuild(ctx context.Context, id string) (*ClaimedBuild, error) {
	var b ClaimedBuild
	err := first(s.db.WithContext(ctx).Raw(`SELECT `+buildClaimColumns+` FROM builds WHERE id = ?`, id), &b)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// PendingJobs counts jobs that are queued or in progress anywhere.
func (s *Store) PendingJobs(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(`SELECT
		(SELECT COUNT(*) FROM builds WHERE status IN ('queued', 'building')) +
		(SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running'))`).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count pending jobs: %w", err)
	}
	return n, nil
}

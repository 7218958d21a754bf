package store

import (
	"context"
	"fmt"
	"time"
)

// QueueStat is the queue of one kind of job: what the queue gauges show.
type QueueStat struct {
	Kind    Kind
	Ready   int64 // queued, available now, attempts left
	Delayed int64 // queued, waiting for available_at (retry backoff)
	Running int64 // running (runs) or building (builds)
	// OldestReady is when the longest-waiting ready job became available.
	OldestReady Time
}

// queueStatsSQL reads only live rows: each part filters on exactly the
// status of a partial index in workerIndexes (ix_runs_queued_claim,
// ix_runs_running_lease, ix_builds_queued_claim, ix_builds_building_lease),
// so its cost follows the queue's length, not the table's history. A ready
// run may still wait for its build to become ready.
const queueStatsSQL = `
SELECT 'run' AS kind,
	COALESCE(SUM(CASE WHEN available_at <= @now AND attempt_count < max_attempts THEN 1 ELSE 0 END), 0) AS ready,
	COALESCE(SUM(CASE WHEN available_at > @now THEN 1 ELSE 0 END), 0) AS delayed,
	(SELECT COUNT(*) FROM runs WHERE status = 'running') AS running,
	MIN(CASE WHEN available_at <= @now AND attempt_count < max_attempts THEN available_at END) AS oldest_ready
FROM runs WHERE status = 'queued'
UNION ALL
SELECT 'build' AS kind,
	COALESCE(SUM(CASE WHEN (available_at IS NULL OR available_at <= @now) AND attempt_count < max_attempts THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN available_at > @now THEN 1 ELSE 0 END), 0),
	(SELECT COUNT(*) FROM builds WHERE status = 'building'),
	MIN(CASE WHEN (available_at IS NULL OR available_at <= @now) AND attempt_count < max_attempts
		THEN COALESCE(available_at, created_at) END)
FROM builds WHERE status = 'queued'`

// QueueStats counts queued and running jobs by kind, cheaply enough to run
// every few seconds on a table of a million finished rows.
func (s *Store) QueueStats(ctx context.Context, now time.Time) ([]QueueStat, error) {
	var out []QueueStat
	err := s.db.WithContext(ctx).Raw(queueStatsSQL, map[string]any{"now": s.ts(now)}).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("read queue stats: %w", err)
	}
	return out, nil
}

package store

import (
	"context"
	"fmt"
)

// QueueStat is the queue of one kind of job: what the queue gauges show.
type QueueStat struct {
	Kind    Kind
	Ready   int64 // claimable now (claimable.go), within the cap
	Delayed int64 // queued, waiting for available_at (retry backoff)
	Running int64 // running (runs) or building (builds)
	// OldestReady is when the longest-waiting ready job became available.
	OldestReady Time
	// Now is the database's clock when the stats were read: the one clock
	// that ages OldestReady.
	Now Time
}

// queueStatsSQL reads only live rows: each part filters on exactly the
// status of a partial index (see workerIndexes and fairShareIndexes), so
// its cost follows the queue's length, not the table's history. Ready is
// the claimable rule of claimable.go, the cap included: what claims would
// take now.
func queueStatsSQL(d dialect, p ClaimPolicy) string {
	now := d.nowSQL()
	part := func(q queueKind) string {
		return `SELECT '` + string(q.kind) + `' AS kind,
	(` + q.countSQL(now, q.capOf(p)) + `) AS ready,
	(SELECT COUNT(*) FROM ` + q.table + ` j WHERE j.status = 'queued' AND NOT ` + q.due(now) + `) AS delayed,
	(SELECT COUNT(*) FROM ` + q.table + ` WHERE status = '` + string(q.active) + `') AS running,
	(SELECT MIN(` + q.since + `) FROM ` + q.from + ` WHERE ` + q.claimable(now) + `) AS oldest_ready,
	` + now + ` AS now`
	}
	return part(runQueue) + "\nUNION ALL\n" + part(buildQueue)
}

// QueueStats counts queued and running jobs by kind, cheaply enough to run
// every few seconds on a table of a million finished rows. Ready and
// delayed are told apart on the database's clock.
func (s *Store) QueueStats(ctx context.Context) ([]QueueStat, error) {
	var out []QueueStat
	err := s.db.WithContext(ctx).Raw(queueStatsSQL(s.dialect, s.policy)).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("read queue stats: %w", err)
	}
	return out, nil
}

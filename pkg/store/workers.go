package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// The supervisors table: one row per live supervisor, written by itself at
// start, refreshed by its beat (BeatWorker), deleted when it stops cleanly.
// A supervisor killed outright leaves its row, which then shows as gone
// once it is older than that supervisor's lease, and is removed a day later.

const supervisorsTable = "ade_worker_supervisors"

// createSupervisorsSQL is migration 2; TIMESTAMP is the dialect's type.
const createSupervisorsSQL = `CREATE TABLE IF NOT EXISTS ` + supervisorsTable + ` (
	worker_id varchar(255) PRIMARY KEY,
	host varchar(255) NOT NULL,
	pid integer NOT NULL,
	version varchar(64) NOT NULL,
	started_at TIMESTAMP NOT NULL,
	last_seen_at TIMESTAMP NOT NULL,
	concurrency integer NOT NULL,
	jobs_held integer NOT NULL DEFAULT 0,
	draining integer NOT NULL DEFAULT 0,
	lease_seconds double precision NOT NULL)`

func (s *Store) createSupervisors(db *gorm.DB) error {
	return db.Exec(strings.ReplaceAll(createSupervisorsSQL, "TIMESTAMP", s.dialect.timestampType())).Error
}

// WorkerInfo is what a supervisor says of itself when it starts.
type WorkerInfo struct {
	WorkerID    string
	Host        string
	PID         int
	Version     string
	Concurrency int
	Lease       time.Duration
}

// RegisterWorker writes (or rewrites) the supervisor's row: started and seen
// now, by the database's clock, holding nothing.
func (s *Store) RegisterWorker(ctx context.Context, w WorkerInfo) error {
	now := s.dialect.nowSQL()
	err := s.db.WithContext(ctx).Exec(`INSERT INTO `+supervisorsTable+`
	(worker_id, host, pid, version, started_at, last_seen_at, concurrency, jobs_held, draining, lease_seconds)
	VALUES (?, ?, ?, ?, `+now+`, `+now+`, ?, 0, 0, ?)
	ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, version = excluded.version,
	started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, concurrency = excluded.concurrency,
	jobs_held = 0, draining = 0, lease_seconds = excluded.lease_seconds`,
		w.WorkerID, w.Host, w.PID, w.Version, w.Concurrency, w.Lease.Seconds()).Error
	if err != nil {
		return fmt.Errorf("register supervisor %s: %w", w.WorkerID, err)
	}
	return nil
}

// RemoveWorker deletes the supervisor's row (a clean stop).
func (s *Store) RemoveWorker(ctx context.Context, workerID string) error {
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM `+supervisorsTable+` WHERE worker_id = ?`, workerID).Error; err != nil {
		return fmt.Errorf("remove supervisor %s: %w", workerID, err)
	}
	return nil
}

// RemoveGoneWorkers deletes rows not seen for longer than after.
func (s *Store) RemoveGoneWorkers(ctx context.Context, after time.Duration) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM `+supervisorsTable+` WHERE last_seen_at < `+s.dialect.laterSQL("?"), -after.Seconds())
	if res.Error != nil {
		return 0, fmt.Errorf("remove gone supervisors: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// WorkerRow is one supervisor as `supervisor workers` shows it.
type WorkerRow struct {
	WorkerID     string
	Host         string
	PID          int
	Version      string
	StartedAt    Time
	LastSeenAt   Time
	Concurrency  int
	JobsHeld     int
	Draining     bool
	LeaseSeconds float64
	// DBNow is the database's clock when the row was read.
	DBNow Time
	// Gone: not seen for longer than its lease (killed, or cut off).
	Gone bool
	// Leader: this supervisor does the fleet's maintenance now.
	Leader bool
}

// SinceSeen is how long ago the row was refreshed, by the database's clock.
func (w *WorkerRow) SinceSeen() time.Duration { return w.DBNow.Sub(w.LastSeenAt.Time) }

func (s *Store) workerSQL(where string) string {
	d := s.dialect
	return `SELECT worker_id, host, pid, version, started_at, last_seen_at, concurrency, jobs_held,
	CASE WHEN draining <> 0 THEN 1 ELSE 0 END AS draining, lease_seconds, ` + d.nowSQL() + ` AS db_now,
	CASE WHEN last_seen_at < ` + d.laterSQL("-lease_seconds") + ` THEN 1 ELSE 0 END AS gone,
	CASE WHEN worker_id IN (SELECT l.worker_id FROM ` + leaderTable + ` l WHERE l.role = '` + leaderRole + `'
		AND l.expires_at >= ` + d.nowSQL() + `) THEN 1 ELSE 0 END AS leader
FROM ` + supervisorsTable + where + ` ORDER BY host, worker_id`
}

// workerScan is WorkerRow as scanned: both databases give the flags as
// integers.
type workerScan struct {
	WorkerID, Host, Version string
	PID                     int `gorm:"column:pid"`
	Concurrency, JobsHeld   int
	StartedAt, LastSeenAt   Time
	DBNow                   Time `gorm:"column:db_now"`
	LeaseSeconds            float64
	Draining, Gone, Leader  int
}

func (w workerScan) row() WorkerRow {
	return WorkerRow{WorkerID: w.WorkerID, Host: w.Host, PID: w.PID, Version: w.Version, StartedAt: w.StartedAt,
		LastSeenAt: w.LastSeenAt, Concurrency: w.Concurrency, JobsHeld: w.JobsHeld, Draining: w.Draining != 0,
		LeaseSeconds: w.LeaseSeconds, DBNow: w.DBNow, Gone: w.Gone != 0, Leader: w.Leader != 0}
}

// Workers lists every supervisor row, gone ones included.
func (s *Store) Workers(ctx context.Context) ([]WorkerRow, error) {
	var rows []workerScan
	if err := s.db.WithContext(ctx).Raw(s.workerSQL("")).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("list supervisors: %w", err)
	}
	out := make([]WorkerRow, len(rows))
	for i, r := range rows {
		out[i] = r.row()
	}
	return out, nil
}

// Worker reads one supervisor's row; ErrNotFound when it has none.
func (s *Store) Worker(ctx context.Context, workerID string) (*WorkerRow, error) {
	var r workerScan
	err := first(s.db.WithContext(ctx).Raw(s.workerSQL(" WHERE worker_id = ?"), workerID), &r)
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read supervisor %s: %w", workerID, err)
	}
	row := r.row()
	return &row, nil
}

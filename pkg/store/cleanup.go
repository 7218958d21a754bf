package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ExpiredLease is a job whose lease ran out on the database's clock: its
// supervisor died, froze or lost the database for longer than the lease.
type ExpiredLease struct {
	ID           string
	AttemptCount int
	MaxAttempts  int
	// ClaimedBy holds the lease; ExpiresAt is when it ended, as written
	// (a renewal changes it).
	ClaimedBy string
	ExpiresAt string
}

// LeaseExpiry is what the supervisor decided for one expired lease: fail the
// job, or re-queue it after Delay. Message is the job's error_message.
type LeaseExpiry struct {
	ID      string
	Attempt int
	Fail    bool
	Delay   time.Duration
	Message string
}

// ExpiredLeases lists up to limit jobs of kind whose lease has expired,
// oldest expiry first.
//
// A lease that ends further ahead than the longest lease of any supervisor
// is stale: the database's clock was stepped back (a VM restore, an NTP
// correction) after it was written, and compared as it is it would keep a
// dead holder's job unclaimed for as long as the clock went back. The same
// read finds such leases; they are pulled back to one lease (their
// holder's) from now (clampLeases), so a live holder's next renewal still
// holds and a dead holder's job is rescued one lease later. No lease a
// holder wrote on this clock is ever that far ahead, so no live job is
// rescued early.
func (s *Store) ExpiredLeases(ctx context.Context, kind Kind, limit int) ([]ExpiredLease, error) {
	f := Fence{Kind: kind}
	now := s.dialect.nowSQL()
	var rows []struct {
		ID           string
		AttemptCount int
		MaxAttempts  int
		ClaimedBy    sql.NullString
		Expires      string
		Ahead        int
	}
	// Two range scans of the lease index: the expired leases, and whether
	// any is stale (the latest one is enough: clampLeases pulls back them
	// all). The status is written out, not an argument, so that a cached
	// generic plan still matches the partial index.
	active := `'` + string(f.activeStatus()) + `'`
	q := `SELECT id, attempt_count, max_attempts, claimed_by, expires, 0 AS ahead FROM (SELECT id, attempt_count, max_attempts, claimed_by,
			CAST(claim_expires_at AS text) AS expires FROM ` + f.table() + `
		WHERE status = ` + active + ` AND claim_expires_at < ` + now + ` ORDER BY claim_expires_at LIMIT ?) AS expired
	UNION ALL
	SELECT id, attempt_count, max_attempts, NULL, '', 1 AS ahead FROM (SELECT id, attempt_count, max_attempts FROM ` + f.table() + `
		WHERE status = ` + active + ` AND claim_expires_at > ` + s.staleLeaseSQL() + ` ORDER BY claim_expires_at DESC LIMIT 1) AS stale`
	err := s.db.WithContext(ctx).Raw(q, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("find expired %s leases: %w", kind, err)
	}
	jobs := make([]ExpiredLease, 0, len(rows))
	ahead := false
	for _, r := range rows {
		if r.Ahead != 0 {
			ahead = true
			continue
		}
		jobs = append(jobs, ExpiredLease{ID: r.ID, AttemptCount: r.AttemptCount, MaxAttempts: r.MaxAttempts,
			ClaimedBy: r.ClaimedBy.String, ExpiresAt: r.Expires})
	}
	if ahead {
		if err := s.clampLeases(ctx, kind); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

// staleLeaseSQL is the time beyond which a lease is stale: the database's
// now plus the longest lease of any supervisor; with none registered, a
// billion seconds (NULL would be 0 in SQLite's printf), so nothing is.
func (s *Store) staleLeaseSQL() string {
	return s.dialect.laterSQL(`COALESCE((SELECT MAX(lease_seconds) FROM ` + supervisorsTable + `), 1e9)`)
}

// clampLeases pulls every stale lease of kind back to its holder's lease
// from now (the longest lease when the holder is not registered).
func (s *Store) clampLeases(ctx context.Context, kind Kind) error {
	f := Fence{Kind: kind}
	t := f.table()
	lease := `COALESCE((SELECT lease_seconds FROM ` + supervisorsTable + ` WHERE worker_id = ` + t + `.claimed_by),
		(SELECT MAX(lease_seconds) FROM ` + supervisorsTable + `))`
	err := s.db.WithContext(ctx).Exec(`UPDATE ` + t + ` SET claim_expires_at = ` + s.dialect.laterSQL(lease) + `
		WHERE status = '` + string(f.activeStatus()) + `' AND claim_expires_at > ` + s.staleLeaseSQL()).Error
	if err != nil {
		return fmt.Errorf("pull back %s leases that end too far ahead: %w", kind, err)
	}
	return nil
}

// ExpireLeases writes the decisions for expired leases of kind in one
// statement. A row changes only while it is still active at the decided
// attempt and its lease still expired (not renewed meanwhile). The documents
// of failed runs that were left processing move to failed in the same
// transaction.
func (s *Store) ExpireLeases(ctx context.Context, kind Kind, decisions []LeaseExpiry) (requeued, failed int, err error) {
	if len(decisions) == 0 {
		return 0, 0, nil
	}
	f := Fence{Kind: kind}
	finished, now := "completed_at", s.dialect.nowSQL()
	if kind == KindBuild {
		finished = "finished_at"
	}
	row := "(CAST(? AS varchar), CAST(? AS integer), CAST(? AS boolean), CAST(? AS double precision), CAST(? AS text))"
	args := make([]any, 0, 5*len(decisions)+1)
	for _, d := range decisions {
		args = append(args, d.ID, d.Attempt, d.Fail, d.Delay.Seconds(), d.Message)
	}
	args = append(args, f.activeStatus())
	q := `WITH v (vid, vattempt, vfail, vdelay, vmsg) AS (VALUES ` + strings.TrimSuffix(strings.Repeat(row+", ", len(decisions)), ", ") + `)
UPDATE ` + f.table() + ` SET
	status = CASE WHEN v.vfail THEN 'failed' ELSE 'queued' END,
	` + finished + ` = CASE WHEN v.vfail THEN ` + now + ` ELSE ` + finished + ` END,
	available_at = CASE WHEN v.vfail THEN available_at ELSE ` + s.dialect.laterSQL("v.vdelay") + ` END,
	claimed_by = CASE WHEN v.vfail THEN claimed_by ELSE NULL END,
	error_message = v.vmsg, claim_expires_at = NULL
FROM v WHERE id = v.vid AND attempt_count = v.vattempt AND status = ? AND claim_expires_at < ` + now + `
RETURNING id, status`
	err = s.tx(ctx, func(tx *gorm.DB) error {
		requeued, failed = 0, 0
		var rows []struct {
			ID     string
			Status Status
		}
		if err := tx.Raw(q, args...).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			if r.Status == StatusQueued {
				requeued++
				continue
			}
			failed++
			if kind == KindRun {
				if err := s.failProcessingDocument(tx, r.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("expire %d %s leases: %w", len(decisions), kind, err)
	}
	return requeued, failed, nil
}

// failProcessingDocument moves a run's document to failed when the run left
// it processing.
func (s *Store) failProcessingDocument(tx *gorm.DB, runID string) error {
	var docID string
	res := tx.Raw(`SELECT d.id FROM runs r JOIN documents d ON d.id = r.input_document_id
		WHERE r.id = ? AND d.status = 'processing'`, runID).Scan(&docID)
	if res.Error != nil || res.RowsAffected == 0 {
		return res.Error
	}
	return s.moveDocument(tx, docID, runID, DocumentFailed)
}

// FailUnleasedBuilds fails, with message, builds left building without a
// lease (by a worker that did not lease builds) for longer than timeout.
func (s *Store) FailUnleasedBuilds(ctx context.Context, timeout time.Duration, message string) (int, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE builds SET status = 'failed', finished_at = `+s.dialect.nowSQL()+`, error_message = ?
		WHERE status = 'building' AND claim_expires_at IS NULL AND COALESCE(started_at, created_at) < `+s.dialect.laterSQL("?"),
		message, -timeout.Seconds())
	if res.Error != nil {
		return 0, fmt.Errorf("fail stuck builds: %w", res.Error)
	}
	return int(res.RowsAffected), nil
}

// FailRunsOfFailedBuilds fails queued runs whose build failed or was
// cancelled: they could never become claimable.
func (s *Store) FailRunsOfFailedBuilds(ctx context.Context) (int, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE runs SET status = 'failed', completed_at = `+s.dialect.nowSQL()+`, error_message = ?
		WHERE status = 'queued' AND build_id IN (SELECT id FROM builds WHERE status IN ('failed', 'cancelled'))`,
		MsgBuildFailedBefore)
	if res.Error != nil {
		return 0, fmt.Errorf("fail runs of failed builds: %w", res.Error)
	}
	return int(res.RowsAffected), nil
}

package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// CleanupResult counts what one cleanup pass changed.
type CleanupResult struct {
	RunsRequeued, RunsFailed, BuildsRequeued, BuildsFailed, RunsFailedByBuild int
}

// Changed reports whether the pass changed anything.
func (r CleanupResult) Changed() bool { return r != CleanupResult{} }

// cleanupBatch bounds the rows one pass touches, so a huge backlog of expired
// leases cannot hold the write lock for long.
const cleanupBatch = 500

// Cleanup rescues jobs whose lease expired (their supervisor died), fails
// builds stuck without a lease past the build timeout, and fails queued runs
// whose build failed. backoff gives the retry delay for an attempt number.
func (s *Store) Cleanup(ctx context.Context, now time.Time, backoff func(attempt int) time.Duration, buildTimeout time.Duration) (CleanupResult, error) {
	var res CleanupResult
	var err error
	if res.RunsRequeued, res.RunsFailed, err = s.expireLeases(ctx, KindRun, now, backoff); err != nil {
		return res, err
	}
	if res.BuildsRequeued, res.BuildsFailed, err = s.expireLeases(ctx, KindBuild, now, backoff); err != nil {
		return res, err
	}
	stuck, err := s.failUnleasedBuilds(ctx, now, buildTimeout)
	if err != nil {
		return res, err
	}
	res.BuildsFailed += stuck
	if res.RunsFailedByBuild, err = s.FailRunsOfFailedBuilds(ctx, now); err != nil {
		return res, err
	}
	return res, nil
}

type expiredJob struct {
	ID           string
	AttemptCount int
	MaxAttempts  int
}

func (s *Store) expireLeases(ctx context.Context, kind Kind, now time.Time, backoff func(int) time.Duration) (requeued, failed int, err error) {
	f := Fence{Kind: kind}
	var jobs []expiredJob
	err = s.db.WithContext(ctx).Raw(`SELECT id, attempt_count, max_attempts FROM `+f.table()+`
		WHERE status = ? AND claim_expires_at < ? ORDER BY claim_expires_at LIMIT ?`,
		f.activeStatus(), s.ts(now), cleanupBatch).Scan(&jobs).Error
	if err != nil {
		return 0, 0, fmt.Errorf("find expired %s leases: %w", kind, err)
	}
	msg := MsgRunLeaseExpired
	if kind == KindBuild {
		msg = MsgBuildLeaseExpired
	}
	for _, j := range jobs {
		exhausted := j.AttemptCount >= j.MaxAttempts
		changed := false
		err := s.tx(ctx, func(tx *gorm.DB) error {
			where := "id = ? AND status = ? AND attempt_count = ? AND claim_expires_at < ?"
			args := []any{j.ID, f.activeStatus(), j.AttemptCount, s.ts(now)}
			var q *gorm.DB
			if exhausted {
				finished := "completed_at"
				if kind == KindBuild {
					finished = "finished_at"
				}
				q = tx.Exec("UPDATE "+f.table()+" SET status = 'failed', "+finished+" = ?, error_message = ?, claim_expires_at = NULL WHERE "+where,
					append([]any{s.ts(now), msg + fmt.Sprintf(" after %d attempts", j.AttemptCount)}, args...)...)
			} else {
				q = tx.Exec("UPDATE "+f.table()+" SET status = 'queued', available_at = ?, error_message = ?, claimed_by = NULL, claim_expires_at = NULL WHERE "+where,
					append([]any{s.ts(now.Add(backoff(j.AttemptCount))), msg}, args...)...)
			}
			if q.Error != nil {
				return q.Error
			}
			changed = q.RowsAffected > 0 // not when the lease was renewed meanwhile
			if !changed || !exhausted || kind != KindRun {
				return nil
			}
			return s.failProcessingDocument(tx, j.ID, now)
		})
		if err != nil {
			return requeued, failed, fmt.Errorf("expire %s %s: %w", kind, j.ID, err)
		}
		switch {
		case !changed:
		case exhausted:
			failed++
		default:
			requeued++
		}
	}
	return requeued, failed, nil
}

// failProcessingDocument moves a run's document to failed when the run left
// it processing.
func (s *Store) failProcessingDocument(tx *gorm.DB, runID string, now time.Time) error {
	var docID string
	res := tx.Raw(`SELECT d.id FROM runs r JOIN documents d ON d.id = r.input_document_id
		WHERE r.id = ? AND d.status = 'processing'`, runID).Scan(&docID)
	if res.Error != nil || res.RowsAffected == 0 {
		return res.Error
	}
	return s.moveDocument(tx, docID, runID, DocumentFailed, now)
}

// failUnleasedBuilds fails builds left building without a lease (by a worker
// that did not lease builds) for longer than the build timeout.
func (s *Store) failUnleasedBuilds(ctx context.Context, now time.Time, timeout time.Duration) (int, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE builds SET status = 'failed', finished_at = ?, error_message = ?
		WHERE status = 'building' AND claim_expires_at IS NULL AND COALESCE(started_at, created_at) < ?`,
		s.ts(now), fmt.Sprintf("Build timed out after %s", timeout), s.ts(now.Add(-timeout)))
	if res.Error != nil {
		return 0, fmt.Errorf("fail stuck builds: %w", res.Error)
	}
	return int(res.RowsAffected), nil
}

// FailRunsOfFailedBuilds fails queued runs whose build failed or was
// cancelled: they could never become claimable.
func (s *Store) FailRunsOfFailedBuilds(ctx context.Context, now time.Time) (int, error) {
	res := s.db.WithContext(ctx).Exec(`UPDATE runs SET status = 'failed', completed_at = ?, error_message = ?
		WHERE status = 'queued' AND build_id IN (SELECT id FROM builds WHERE status IN ('failed', 'cancelled'))`,
		s.ts(now), MsgBuildFailedBefore)
	if res.Error != nil {
		return 0, fmt.Errorf("fail runs of failed builds: %w", res.Error)
	}
	return int(res.RowsAffected), nil
}

package store

import (
	"context"

	"gorm.io/gorm"
)

// A job handed back at shutdown does not count the attempt: a rollout is
// not the job's fault. But a job longer than the shutdown grace, on a fleet
// that scales down or rolls out more often than the job takes, would be
// handed back forever. ade_worker_handbacks counts each job's hand-backs
// in the database (a job's own code can write its events file, not this);
// past a bound they count as attempts, and a job whose attempts are used up
// fails instead of looping.

const handBacksTable = "ade_worker_handbacks"

const createHandBacksSQL = `CREATE TABLE IF NOT EXISTS ` + handBacksTable + ` (
	kind VARCHAR(10) NOT NULL,
	job_id VARCHAR(36) NOT NULL,
	handbacks INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (kind, job_id))`

func (s *Store) createHandBacks(db *gorm.DB) error { return db.Exec(createHandBacksSQL).Error }

// HandBack is how HandBack ended.
type HandBack int

// Outcomes of HandBack.
const (
	// HandBackFree: re-queued, the attempt given back.
	HandBackFree HandBack = iota
	// HandBackCounted: re-queued, the attempt counted (past the bound).
	HandBackCounted
	// HandBackExhausted: nothing written; past the bound with its attempts
	// used up, the job is to fail.
	HandBackExhausted
)

// HandBack re-queues a held job at once after a shutdown stopped it, and
// returns how, with the number of hand-backs before this one. The first
// free hand-backs give the attempt back; later ones count it.
func (s *Store) HandBack(ctx context.Context, f Fence, message string, free int) (HandBack, int, error) {
	var (
		how   HandBack
		prior int
	)
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var counts []int
		if err := tx.Raw(`SELECT handbacks FROM `+handBacksTable+` WHERE kind = ? AND job_id = ?`, string(f.Kind), f.ID).
			Scan(&counts).Error; err != nil {
			return err
		}
		if len(counts) > 0 {
			prior = counts[0]
		}
		var maxAttempts []int
		where, args := f.where()
		if err := tx.Raw(`SELECT max_attempts FROM `+f.table()+` WHERE `+where, args...).Scan(&maxAttempts).Error; err != nil {
			return err
		}
		if len(maxAttempts) == 0 {
			return ErrLeaseLost
		}
		set := requeueSet(s.dialect)
		switch {
		case prior < free:
			how = HandBackFree
			set += ", attempt_count = attempt_count - 1"
		case f.Attempt < maxAttempts[0]:
			how = HandBackCounted
		default:
			how = HandBackExhausted
			return nil
		}
		if err := s.fencedUpdate(tx, f, set, 0.0, nullIfEmpty(message)); err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO `+handBacksTable+` (kind, job_id, handbacks) VALUES (?, ?, 1)
	ON CONFLICT (kind, job_id) DO UPDATE SET handbacks = `+handBacksTable+`.handbacks + 1`, string(f.Kind), f.ID).Error
	})
	return how, prior, err
}

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrNotCancellable is returned by CancelJob for a job that already ended.
var ErrNotCancellable = errors.New("only queued or running jobs can be cancelled")

// JobRef names one build or run.
type JobRef struct {
	Kind Kind
	ID   string
}

// cancelSet is the write the ADE API makes to cancel a job: the status, its
// end time(s) on the database's clock, and no claim. Runs have
// cancelled_at, builds do not.
func (s *Store) cancelSet(k Kind) string {
	now := s.dialect.nowSQL()
	if k == KindBuild {
		return "status = 'cancelled', finished_at = " + now + ", claimed_by = NULL, claim_expires_at = NULL"
	}
	return "status = 'cancelled', cancelled_at = " + now + ", completed_at = " + now + ", claimed_by = NULL, claim_expires_at = NULL"
}

// CancelJob cancels a queued or running job the way the ADE API does and
// returns the status it had. The write is conditioned on the status it read:
// it loses to a worker's final write that committed first (the job keeps
// that outcome, ErrNotCancellable), and a worker's fenced write that comes
// after it finds the row no longer running and writes nothing.
func (s *Store) CancelJob(ctx context.Context, k Kind, id string) (was Status, err error) {
	f := Fence{Kind: k}
	for try := 0; try < 5; try++ {
		was, err = s.JobStatus(ctx, k, id)
		if err != nil {
			return "", err
		}
		if !allows(k, was, EventCancel) {
			return was, fmt.Errorf("%s %s is %s: %w", k, id, was, ErrNotCancellable)
		}
		res := s.db.WithContext(ctx).Exec("UPDATE "+f.table()+" SET "+s.cancelSet(k)+" WHERE id = ? AND status = ?", id, was)
		if res.Error != nil {
			return "", fmt.Errorf("cancel %s %s: %w", k, id, res.Error)
		}
		if res.RowsAffected == 1 {
			return was, nil
		}
		// The status changed between the read and the write: look again.
	}
	return "", fmt.Errorf("cancel %s %s: its status keeps changing; try again", k, id)
}

// JobStatus reads a job's status; ErrNotFound when there is no such row.
func (s *Store) JobStatus(ctx context.Context, k Kind, id string) (Status, error) {
	var status string // gorm scans a single column into a plain string only
	err := first(s.db.WithContext(ctx).Raw("SELECT status FROM "+Fence{Kind: k}.table()+" WHERE id = ?", id), &status)
	if errors.Is(err, ErrNotFound) {
		return "", fmt.Errorf("no %s with id %s: %w", k, id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read %s %s: %w", k, id, err)
	}
	return Status(status), nil
}

// Cancelled returns which of the given jobs are cancelled. It looks the ids
// up by primary key, so it costs the same however many rows the tables hold.
// One read statement, no transaction (on SQLite a transaction would take the
// write lock).
func (s *Store) Cancelled(ctx context.Context, jobs []JobRef) ([]JobRef, error) {
	ids := map[Kind][]string{}
	for _, j := range jobs {
		ids[j.Kind] = append(ids[j.Kind], j.ID)
	}
	var parts []string
	var args []any
	for _, k := range []Kind{KindRun, KindBuild} {
		if len(ids[k]) > 0 {
			parts = append(parts, "SELECT '"+string(k)+"' AS kind, id FROM "+Fence{Kind: k}.table()+
				" WHERE id IN ? AND status = 'cancelled'")
			args = append(args, ids[k])
		}
	}
	if len(parts) == 0 {
		return nil, nil
	}
	var out []JobRef
	if err := s.db.WithContext(ctx).Raw(strings.Join(parts, " UNION ALL "), args...).Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("look for cancelled jobs: %w", err)
	}
	return out, nil
}

// Ref names the fenced job.
func (f Fence) Ref() JobRef { return JobRef{Kind: f.Kind, ID: f.ID} }

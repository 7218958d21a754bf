package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotRetryable is returned by RetryJob for a job that is not failed or
// cancelled: queued and running jobs will run, succeeded ones did.
var ErrNotRetryable = errors.New("only failed or cancelled jobs can be retried")

// ErrBuildNotReady is returned by RetryJob for a run whose build failed or
// was cancelled: the run would fail again at once.
var ErrBuildNotReady = errors.New("the run's build is not ready or queued")

// RetryTarget is a job RetryJob may put back in the queue, as it was.
type RetryTarget struct {
	Kind            Kind
	ID              string
	WorkspaceID     string
	ConfigurationID string
	Status          Status
	ErrorMessage    *string
	AttemptCount    int
	BuildID         *string // runs only
	BuildStatus     *string // runs only: the status of BuildID
	EndedAt         Time    // completed_at, cancelled_at or finished_at
}

// PreviousError is the job's error message, "" when none.
func (t *RetryTarget) PreviousError() string {
	if t.ErrorMessage == nil {
		return ""
	}
	return *t.ErrorMessage
}

// Retryable says why t cannot be retried (ErrNotRetryable or
// ErrBuildNotReady, wrapped with the job and the fix), or nil.
func (t *RetryTarget) Retryable() error {
	if !allows(t.Kind, t.Status, EventOperatorRetry) {
		return fmt.Errorf("%s %s is %s: %w", t.Kind, t.ID, t.Status, ErrNotRetryable)
	}
	if t.Kind == KindRun && t.BuildID != nil {
		bs := "missing"
		if t.BuildStatus != nil {
			bs = *t.BuildStatus
		}
		switch Status(bs) {
		case StatusReady, StatusQueued, StatusBuilding:
		default:
			return fmt.Errorf("run %s: its build %s is %s: %w; retry the build first ('supervisor retry build %s')",
				t.ID, *t.BuildID, bs, ErrBuildNotReady, *t.BuildID)
		}
	}
	return nil
}

// retryColumns are the columns of RetryTarget, for runs r joined to their
// build b, and for builds.
const (
	retryRunColumns = `'run' AS kind, r.id, r.workspace_id, r.configuration_id, r.status, r.error_message, r.attempt_count,
	r.build_id, b.status AS build_status, COALESCE(r.completed_at, r.cancelled_at) AS ended_at`
	retryBuildColumns = `'build' AS kind, id, workspace_id, configuration_id, status, error_message, attempt_count,
	NULL AS build_id, NULL AS build_status, finished_at AS ended_at`
)

// RetryTargetOf reads the job k id as RetryJob would judge it.
func (s *Store) RetryTargetOf(ctx context.Context, k Kind, id string) (*RetryTarget, error) {
	q := `SELECT ` + retryRunColumns + ` FROM runs r LEFT JOIN builds b ON b.id = r.build_id WHERE r.id = ?`
	if k == KindBuild {
		q = `SELECT ` + retryBuildColumns + ` FROM builds WHERE id = ?`
	}
	var t RetryTarget
	err := first(s.db.WithContext(ctx).Raw(q, id), &t)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("no %s with id %s: %w", k, id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", k, id, err)
	}
	return &t, nil
}

// retrySet puts a job back in the queue as a new series of attempts: no
// attempts used, available now by the database's clock, no error, exit
// code, claim or end times of the last series.
func (s *Store) retrySet(k Kind) string {
	now := s.dialect.nowSQL()
	set := "status = 'queued', attempt_count = 0, available_at = " + now +
		", error_message = NULL, exit_code = NULL, claimed_by = NULL, claim_expires_at = NULL, started_at = NULL"
	if k == KindBuild {
		return set + ", finished_at = NULL"
	}
	return set + ", completed_at = NULL, cancelled_at = NULL"
}

// RetryJob puts a failed or cancelled job back in the queue (see retrySet)
// and returns it as it was, and when it was queued again by the database's
// clock. The write is conditioned on the status it read, so it loses to a
// concurrent change. A run whose build failed or was cancelled is refused
// (ErrBuildNotReady); so is a run whose document already has a queued or
// running run of the same configuration.
func (s *Store) RetryJob(ctx context.Context, k Kind, id string) (*RetryTarget, time.Time, error) {
	t, err := s.RetryTargetOf(ctx, k, id)
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := t.Retryable(); err != nil {
		return t, time.Time{}, err
	}
	table := Fence{Kind: k}.table()
	res := s.db.WithContext(ctx).Exec("UPDATE "+table+" SET "+s.retrySet(k)+" WHERE id = ? AND status = ?", id, t.Status)
	if res.Error != nil {
		if k == KindRun && isActiveRunConflict(res.Error) {
			return t, time.Time{}, fmt.Errorf("run %s: another run of its document and configuration is queued or running; "+
				"wait for it or cancel it, then retry", id)
		}
		return t, time.Time{}, fmt.Errorf("retry %s %s: %w", k, id, res.Error)
	}
	if res.RowsAffected != 1 {
		return t, time.Time{}, fmt.Errorf("retry %s %s: its status changed meanwhile; look again with 'supervisor inspect %s'", k, id, id)
	}
	var at Time
	if err := first(s.db.WithContext(ctx).Raw("SELECT available_at FROM "+table+" WHERE id = ?", id), &at); err != nil {
		return t, time.Time{}, fmt.Errorf("read %s %s after retry: %w", k, id, err)
	}
	return t, at.Time, nil
}

// isActiveRunConflict reports whether err is the ADE API's rule of one
// queued or running run per document and configuration (uq_runs_active_job).
func isActiveRunConflict(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "uq_runs_active_job") ||
		(strings.Contains(msg, "UNIQUE constraint failed") && strings.Contains(msg, "runs.input_document_id"))
}

// RetryFilter selects runs for a bulk retry.
type RetryFilter struct {
	Status          Status // failed or cancelled
	WorkspaceID     string // "" means any
	ConfigurationID string // "" means any
	// Since, when positive, keeps runs that ended at most this long ago by
	// the database's clock.
	Since         time.Duration
	ErrorContains string // case-insensitive; "" means any
}

// RetryCandidates lists the runs f selects, oldest end first. Whether each
// can be retried is RetryTarget.Retryable.
func (s *Store) RetryCandidates(ctx context.Context, f RetryFilter) ([]RetryTarget, error) {
	where := []string{"r.status = ?"}
	args := []any{string(f.Status)}
	if f.WorkspaceID != "" {
		where = append(where, "r.workspace_id = ?")
		args = append(args, f.WorkspaceID)
	}
	if f.ConfigurationID != "" {
		where = append(where, "r.configuration_id = ?")
		args = append(args, f.ConfigurationID)
	}
	if f.Since > 0 {
		where = append(where, "COALESCE(r.completed_at, r.cancelled_at) >= "+s.dialect.laterSQL("?"))
		args = append(args, -f.Since.Seconds())
	}
	if f.ErrorContains != "" {
		where = append(where, `LOWER(r.error_message) LIKE ? ESCAPE '\'`)
		args = append(args, "%"+likeEscape(strings.ToLower(f.ErrorContains))+"%")
	}
	q := `SELECT ` + retryRunColumns + ` FROM runs r LEFT JOIN builds b ON b.id = r.build_id WHERE ` +
		strings.Join(where, " AND ") + ` ORDER BY COALESCE(r.completed_at, r.cancelled_at), r.id`
	var out []RetryTarget
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("list runs to retry: %w", err)
	}
	return out, nil
}

// likeEscape makes s match itself in a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// JobDetail is everything the database says about one build or run, as
// `supervisor inspect` shows it.
type JobDetail struct {
	Kind            Kind
	ID              string
	WorkspaceID     string
	ConfigurationID string
	Status          Status
	AttemptCount    int
	MaxAttempts     int
	ClaimedBy       sql.NullString
	ClaimExpiresAt  Time // the lease's end
	CreatedAt       Time
	AvailableAt     Time // NULL on builds the ADE API inserted: available at once
	StartedAt       Time
	EndedAt         Time // completed_at of a run, finished_at of a build
	CancelledAt     Time // runs only
	ExitCode        sql.NullInt64
	ErrorMessage    sql.NullString

	// Runs only.
	DocumentID        string
	DocumentFilename  sql.NullString // NULL when the document row is missing
	DocumentStoredURI sql.NullString
	BuildID           sql.NullString
	BuildStatus       sql.NullString // NULL when the run has no build or its row is missing
	BuildWorkspaceID  sql.NullString // where the build's folder is
	BuildConfigID     sql.NullString
	OutputPath        sql.NullString
	RunOptions        sql.NullString

	// Builds only.
	Fingerprint       sql.NullString
	EngineSpec        sql.NullString
	EngineVersion     sql.NullString
	PythonVersion     sql.NullString
	PythonInterpreter sql.NullString
}

const inspectRunSQL = `SELECT 'run' AS kind, r.id, r.workspace_id, r.configuration_id, r.status,
	r.attempt_count, r.max_attempts, r.claimed_by, r.claim_expires_at, r.created_at, r.available_at,
	r.started_at, r.completed_at AS ended_at, r.cancelled_at, r.exit_code, r.error_message,
	r.input_document_id AS document_id, d.original_filename AS document_filename,
	d.stored_uri AS document_stored_uri, r.build_id, b.status AS build_status,
	b.workspace_id AS build_workspace_id, b.configuration_id AS build_config_id, r.output_path, r.run_options
FROM runs r
LEFT JOIN documents d ON d.id = r.input_document_id
LEFT JOIN builds b ON b.id = r.build_id
WHERE r.id = ?`

const inspectBuildSQL = `SELECT 'build' AS kind, id, workspace_id, configuration_id, status,
	attempt_count, max_attempts, claimed_by, claim_expires_at, created_at, available_at,
	started_at, finished_at AS ended_at, exit_code, error_message,
	fingerprint, engine_spec, engine_version, python_version, python_interpreter
FROM builds WHERE id = ?`

// Inspect reads the run or build with the given id (runs are looked up
// first). It returns ErrNotFound when neither table has it.
func (s *Store) Inspect(ctx context.Context, id string) (*JobDetail, error) {
	for _, q := range []string{inspectRunSQL, inspectBuildSQL} {
		var d JobDetail
		err := first(s.db.WithContext(ctx).Raw(q, id), &d)
		if err == nil {
			return &d, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("read job %s: %w", id, err)
		}
	}
	return nil, ErrNotFound
}

// WaitReason is a stable name for why a queued job is not running.
type WaitReason string

// Why a queued job is not running, in the order WhyNotRunning checks them.
const (
	WaitAttemptsUsedUp WaitReason = "attempts_used_up"  // attempt_count >= max_attempts: never claimed
	WaitBuildMissing   WaitReason = "build_missing"     // its build row does not exist: never claimed
	WaitBuildFailed    WaitReason = "build_failed"      // its build failed or was cancelled: cleanup fails the run
	WaitForBuild       WaitReason = "waiting_for_build" // its build is queued or building
	WaitBackoff        WaitReason = "backoff"           // available_at is in the future
	WaitClaimable      WaitReason = "claimable"         // the next supervisor with a free slot takes it
)

// Wait says why a queued job is not running.
type Wait struct {
	Reason  WaitReason
	Message string
	Until   time.Time // end of the backoff; zero otherwise
}

// WhyNotRunning explains a queued job by the claim rule (status queued,
// available_at <= now, attempt_count < max_attempts, and for a run a build
// that is NULL or ready). It returns nil when the job is not queued.
func (d *JobDetail) WhyNotRunning(now time.Time) *Wait {
	if d.Status != StatusQueued {
		return nil
	}
	if d.AttemptCount >= d.MaxAttempts {
		return &Wait{Reason: WaitAttemptsUsedUp, Message: fmt.Sprintf(
			"attempts used up (%d of %d): no supervisor will claim it; raise max_attempts or enqueue it again",
			d.AttemptCount, d.MaxAttempts)}
	}
	if w := d.buildWait(); w != nil {
		return w
	}
	if d.AvailableAt.Valid && d.AvailableAt.After(now) {
		return &Wait{Reason: WaitBackoff, Until: d.AvailableAt.Time, Message: fmt.Sprintf(
			"in backoff until %s (in %s), after attempt %d of %d",
			d.AvailableAt.Time.UTC().Format(time.RFC3339), d.AvailableAt.Sub(now).Round(time.Second),
			d.AttemptCount, d.MaxAttempts)}
	}
	msg := "claimable now: the next supervisor with a free slot takes it"
	if d.Kind == KindRun && !d.BuildID.Valid {
		msg += " (it has no build, so it will fail: " + MsgBuildRequired + ")"
	}
	return &Wait{Reason: WaitClaimable, Message: msg}
}

// buildWait is why a run's build keeps it queued, or nil.
func (d *JobDetail) buildWait() *Wait {
	if d.Kind != KindRun || !d.BuildID.Valid {
		return nil
	}
	b := d.BuildID.String
	switch st := Status(d.BuildStatus.String); {
	case !d.BuildStatus.Valid:
		return &Wait{Reason: WaitBuildMissing, Message: fmt.Sprintf(
			"its build %s does not exist: no supervisor will claim it; enqueue a build and a new run", b)}
	case st == StatusFailed || st == StatusCancelled:
		return &Wait{Reason: WaitBuildFailed, Message: fmt.Sprintf(
			"its build %s is %s: the next cleanup fails this run (%s)", b, st, MsgBuildFailedBefore)}
	case st != StatusReady:
		return &Wait{Reason: WaitForBuild, Message: fmt.Sprintf("waiting for its build %s (%s)", b, st)}
	}
	return nil
}

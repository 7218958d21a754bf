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

	// The claim rule's view (claimable.go).
	Claimable           bool    // the rule holds for it now (the cap aside)
	WorkspaceRunning    int     // runs of its workspace running now, fleet-wide
	WorkspaceMaxRunning int     // the cap of runs (0: none); 0 for builds
	Pauses              []Pause `gorm:"-"` // the pauses that cover it
	DBNow               Time    // the database's clock when it was read
}

// inspectSQL reads one job of q with the claimable rule's verdict on it
// (claimable.go: the same SQL the claim runs), the runs its workspace has
// running and the database's clock.
func inspectSQL(d dialect, q queueKind, columns string) string {
	now := d.nowSQL()
	return `SELECT '` + string(q.kind) + `' AS kind, ` + columns + `,
	CASE WHEN ` + q.claimable(now) + ` THEN 1 ELSE 0 END AS claimable,
	(SELECT COUNT(*) FROM runs x WHERE x.status = 'running' AND x.workspace_id = j.workspace_id) AS workspace_running,
	` + now + ` AS db_now
FROM ` + q.from + `
WHERE j.id = ?`
}

const inspectRunColumns = `j.id, j.workspace_id, j.configuration_id, j.status,
	j.attempt_count, j.max_attempts, j.claimed_by, j.claim_expires_at, j.created_at, j.available_at,
	j.started_at, j.completed_at AS ended_at, j.cancelled_at, j.exit_code, j.error_message,
	j.input_document_id AS document_id, d.original_filename AS document_filename,
	d.stored_uri AS document_stored_uri, j.build_id, b.status AS build_status,
	b.workspace_id AS build_workspace_id, b.configuration_id AS build_config_id, j.output_path, j.run_options`

const inspectBuildColumns = `j.id, j.workspace_id, j.configuration_id, j.status,
	j.attempt_count, j.max_attempts, j.claimed_by, j.claim_expires_at, j.created_at, j.available_at,
	j.started_at, j.finished_at AS ended_at, j.exit_code, j.error_message,
	j.fingerprint, j.engine_spec, j.engine_version, j.python_version, j.python_interpreter`

// Inspect reads the run or build with the given id (runs are looked up
// first). It returns ErrNotFound when neither table has it.
func (s *Store) Inspect(ctx context.Context, id string) (*JobDetail, error) {
	runs := runQueue
	runs.from += ` LEFT JOIN documents d ON d.id = j.input_document_id`
	for _, q := range []string{inspectSQL(s.dialect, runs, inspectRunColumns), inspectSQL(s.dialect, buildQueue, inspectBuildColumns)} {
		var d JobDetail
		err := first(s.db.WithContext(ctx).Raw(q, id), &d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read job %s: %w", id, err)
		}
		if d.Kind == KindRun {
			d.WorkspaceMaxRunning = s.policy.WorkspaceMaxRunning
		}
		if d.Pauses, err = s.pausesOf(ctx, d.WorkspaceID, d.ConfigurationID); err != nil {
			return nil, err
		}
		return &d, nil
	}
	return nil, ErrNotFound
}

// pausesOf lists the pauses that cover a job of the workspace and
// configuration.
func (s *Store) pausesOf(ctx context.Context, workspace, configuration string) ([]Pause, error) {
	all, err := s.Pauses(ctx)
	if err != nil {
		return nil, err
	}
	var out []Pause
	for _, p := range all {
		if p.Covers(workspace, configuration) {
			out = append(out, p)
		}
	}
	return out, nil
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
	WaitPaused         WaitReason = "paused"            // a pause covers it (supervisor pause)
	WaitWorkspaceCap   WaitReason = "workspace_cap"     // its workspace has the cap's runs running
	WaitNotClaimable   WaitReason = "not_claimable"     // the rule says no, for none of the reasons above
	WaitClaimable      WaitReason = "claimable"         // the next supervisor with a free slot takes it
)

// Wait says why a queued job is not running.
type Wait struct {
	Reason  WaitReason
	Message string
	Until   time.Time // end of the backoff; zero otherwise
}

// WhyNotRunning explains a queued job by the claim rule (claimable.go):
// status queued, available_at <= now, attempt_count < max_attempts, for a
// run a build that is NULL or ready, no pause, and under the workspace cap.
// The verdict is the database's (Claimable); the reasons only explain it.
// It returns nil when the job is not queued.
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
	if len(d.Pauses) > 0 {
		p := d.Pauses[0]
		what := "everything"
		if p.Scope != PauseAll {
			what = string(p.Scope) + " " + p.Target
		}
		return &Wait{Reason: WaitPaused, Message: fmt.Sprintf("paused: %s since %s by %s; 'supervisor resume' lets it run",
			what, p.PausedAt.Time.UTC().Format(time.RFC3339), orUnknown(p.PausedBy))}
	}
	if !d.Claimable {
		return &Wait{Reason: WaitNotClaimable, Message: "the claim rule does not hold for it now; inspect again in a moment"}
	}
	if d.WorkspaceMaxRunning > 0 && d.WorkspaceRunning >= d.WorkspaceMaxRunning {
		return &Wait{Reason: WaitWorkspaceCap, Message: fmt.Sprintf(
			"workspace %s has %d of %d runs running (ADE_WORKER_WORKSPACE_MAX_RUNNING): it starts when one of them ends",
			d.WorkspaceID, d.WorkspaceRunning, d.WorkspaceMaxRunning)}
	}
	msg := "claimable now: the next supervisor with a free slot takes it"
	if d.Kind == KindRun && !d.BuildID.Valid {
		msg += " (it has no build, so it will fail: " + MsgBuildRequired + ")"
	}
	return &Wait{Reason: WaitClaimable, Message: msg}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
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

package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// BuildOutcome is the terminal state of a build.
type BuildOutcome struct {
	Succeeded         bool
	ExitCode          *int
	Error             string
	Summary           string
	EngineVersion     string
	PythonVersion     string
	PythonInterpreter string
}

// FinishBuild writes a build's terminal status, fenced on the claim. A ready
// build becomes its configuration's active build in the same transaction.
func (s *Store) FinishBuild(ctx context.Context, f Fence, o BuildOutcome, now time.Time) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if !o.Succeeded {
			return s.fencedUpdate(tx, f, `status = 'failed', exit_code = ?, finished_at = ?, error_message = ?,
				summary = ?, claim_expires_at = NULL`, o.ExitCode, s.ts(now), nullIfEmpty(o.Error), nullIfEmpty(o.Summary))
		}
		err := s.fencedUpdate(tx, f, `status = 'ready', exit_code = ?, finished_at = ?, error_message = NULL,
			summary = ?, engine_version = ?, python_version = ?, python_interpreter = ?, claim_expires_at = NULL`,
			o.ExitCode, s.ts(now), nullIfEmpty(o.Summary), nullIfEmpty(o.EngineVersion),
			nullIfEmpty(o.PythonVersion), nullIfEmpty(o.PythonInterpreter))
		if err != nil {
			return err
		}
		return tx.Exec(`UPDATE configurations SET active_build_id = b.id, active_build_fingerprint = b.fingerprint, updated_at = ?
			FROM (SELECT id, fingerprint, configuration_id FROM builds WHERE id = ?) AS b
			WHERE configurations.id = b.configuration_id`, s.ts(now), f.ID).Error
	})
}

// FailBuildEnvironmentMissing marks a ready build failed because its venv is
// gone, so the ADE API (and operators) know to build again.
func (s *Store) FailBuildEnvironmentMissing(ctx context.Context, buildID string, now time.Time) error {
	return s.db.WithContext(ctx).Exec(`UPDATE builds SET status = 'failed', error_message = ?, finished_at = ?
		WHERE id = ? AND status = 'ready'`, MsgBuildEnvMissing, s.ts(now), buildID).Error
}

// Messages written on jobs; the ADE API and operators match on them.
const (
	MsgBuildRequired     = "Build is required before running"
	MsgBuildEnvMissing   = jobspec.MsgBuildEnvMissing
	MsgBuildFailedBefore = "Build failed before run could start"
	MsgRunLeaseExpired   = "Run lease expired"
	MsgBuildLeaseExpired = "Build lease expired"
)

// ReadyBuildsLike lists other ready builds with the given fingerprint,
// newest first: their environments can be reused.
func (s *Store) ReadyBuildsLike(ctx context.Context, fingerprint, exceptID string) ([]Build, error) {
	var out []Build
	err := s.db.WithContext(ctx).Raw(`SELECT id, workspace_id, configuration_id, fingerprint, engine_spec, status, attempt_count
		FROM builds WHERE fingerprint = ? AND status = 'ready' AND id <> ? ORDER BY finished_at DESC LIMIT 5`,
		fingerprint, exceptID).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("find ready builds like %s: %w", exceptID, err)
	}
	return out, nil
}

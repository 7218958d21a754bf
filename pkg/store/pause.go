package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// PauseScope is what a pause covers.
type PauseScope string

// Pause scopes.
const (
	PauseAll           PauseScope = "all"
	PauseWorkspace     PauseScope = "workspace"
	PauseConfiguration PauseScope = "configuration"
)

// PauseScopes are the scopes, in the order status and /metrics show them.
var PauseScopes = []PauseScope{PauseAll, PauseWorkspace, PauseConfiguration}

// Pause is one row of ade_worker_pauses: queued work it covers is not
// claimable (see claimable.go); running work goes on.
type Pause struct {
	Scope    PauseScope
	Target   string // the workspace or configuration id; "" for all
	PausedAt Time
	PausedBy string
}

// pauseModel is the ade_worker_pauses table (migration 2).
type pauseModel struct {
	Scope    string    `gorm:"type:varchar(20);primaryKey"`
	Target   string    `gorm:"type:varchar(255);primaryKey"`
	PausedAt time.Time `gorm:"not null"`
	PausedBy *string   `gorm:"type:varchar(255)"`
}

func (pauseModel) TableName() string { return "ade_worker_pauses" }

// fairShareIndexes serve the fair claim's probes (the oldest claimable job
// of one workspace) and its count of running jobs per workspace.
var fairShareIndexes = []string{
	`CREATE INDEX IF NOT EXISTS ix_runs_queued_workspace ON runs (workspace_id, available_at, created_at) WHERE status = 'queued'`,
	`CREATE INDEX IF NOT EXISTS ix_runs_running_workspace ON runs (workspace_id) WHERE status = 'running'`,
	`CREATE INDEX IF NOT EXISTS ix_builds_queued_workspace ON builds (workspace_id, created_at) WHERE status = 'queued'`,
	`CREATE INDEX IF NOT EXISTS ix_builds_building_workspace ON builds (workspace_id) WHERE status = 'building'`,
}

// fairShare is migration 2: the pauses table and the fair claim's indexes.
func (s *Store) fairShare(db *gorm.DB) error {
	// Not gorm's HasTable, which calls a failed query "missing".
	exists, err := s.hasTable(db, "ade_worker_pauses")
	if err != nil {
		return err
	}
	if !exists {
		if err := db.Migrator().CreateTable(&pauseModel{}); err != nil {
			return fmt.Errorf("create table ade_worker_pauses: %w", err)
		}
	}
	// A resume wakes idle supervisors at once, as a queued job does.
	stmts := append(append([]string(nil), fairShareIndexes...), s.dialect.pauseTriggers()...)
	for _, stmt := range stmts {
		if err := db.Exec(stmt).Error; err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	return nil
}

// ErrBadPause is returned for a pause scope without its target or the
// other way round.
var ErrBadPause = errors.New("a pause is of everything (no target), or of one workspace or configuration (its id)")

func checkPause(scope PauseScope, target string) error {
	switch {
	case scope == PauseAll && target == "":
	case (scope == PauseWorkspace || scope == PauseConfiguration) && target != "":
	default:
		return fmt.Errorf("%w: got scope %q, target %q", ErrBadPause, scope, target)
	}
	return nil
}

// SetPause pauses the scope (target "" for all), recorded as by who, at the
// database's now. Pausing what is paused keeps the first pause's time and
// author; it reports whether the pause is new.
func (s *Store) SetPause(ctx context.Context, scope PauseScope, target, by string) (bool, error) {
	if err := checkPause(scope, target); err != nil {
		return false, err
	}
	res := s.db.WithContext(ctx).Exec(`INSERT INTO ade_worker_pauses (scope, target, paused_at, paused_by)
		SELECT ?, ?, `+s.dialect.nowSQL()+`, ? WHERE NOT EXISTS
		(SELECT 1 FROM ade_worker_pauses WHERE scope = ? AND target = ?)`, scope, target, by, scope, target)
	if res.Error != nil {
		return false, fmt.Errorf("pause %s %s: %w", scope, target, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// ClearPause resumes the scope; it reports whether it was paused.
func (s *Store) ClearPause(ctx context.Context, scope PauseScope, target string) (bool, error) {
	if err := checkPause(scope, target); err != nil {
		return false, err
	}
	res := s.db.WithContext(ctx).Exec(`DELETE FROM ade_worker_pauses WHERE scope = ? AND target = ?`, scope, target)
	if res.Error != nil {
		return false, fmt.Errorf("resume %s %s: %w", scope, target, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// Pauses lists every pause, oldest first.
func (s *Store) Pauses(ctx context.Context) ([]Pause, error) {
	var out []Pause
	err := s.db.WithContext(ctx).Raw(`SELECT scope, target, paused_at, COALESCE(paused_by, '') AS paused_by
		FROM ade_worker_pauses ORDER BY paused_at, scope, target`).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("read pauses: %w", err)
	}
	return out, nil
}

// Covers says whether the pause holds back a job of the workspace and
// configuration.
func (p Pause) Covers(workspace, configuration string) bool {
	switch p.Scope {
	case PauseAll:
		return true
	case PauseWorkspace:
		return p.Target == workspace
	case PauseConfiguration:
		return p.Target == configuration
	}
	return false
}

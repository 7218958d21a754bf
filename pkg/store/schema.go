package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ade-org/ade-worker/pkg/summary"
)

// The models below describe the tables the worker reads and writes, with the
// ADE API's column names. They drive `supervisor migrate` only: queue SQL is
// written by hand in the dialect files so that it stays obvious and fast.

// leaseColumns are the queue columns runs and builds share, last in both
// tables: the attempts and the lease of the worker that holds the job.
type leaseColumns struct {
	AttemptCount   int        `gorm:"type:integer;not null;default:0"`
	MaxAttempts    int        `gorm:"type:integer;not null;default:3"`
	ClaimedBy      *string    `gorm:"type:varchar(255)"`
	ClaimExpiresAt *time.Time ``
}

type configurationModel struct {
	ID                     string     `gorm:"type:varchar(36);primaryKey"`
	WorkspaceID            string     `gorm:"type:varchar(36);not null;index:ix_configurations_workspace_status,priority:1"`
	DisplayName            string     `gorm:"type:varchar(255);not null"`
	Status                 string     `gorm:"type:varchar(20);not null;default:draft;index:ix_configurations_workspace_status,priority:2;check:configuration_status,status IN ('draft','active','archived')"`
	ContentDigest          *string    `gorm:"type:varchar(80)"`
	ActiveBuildID          *string    `gorm:"type:varchar(36);index:ix_configurations_active_build_id"`
	ActiveBuildFingerprint *string    `gorm:"type:varchar(128)"`
	LastUsedAt             *time.Time ``
	ActivatedAt            *time.Time ``
	CreatedAt              time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
	UpdatedAt              time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

func (configurationModel) TableName() string { return "configurations" }

type buildModel struct {
	ID                string     `gorm:"type:varchar(36);primaryKey"`
	WorkspaceID       string     `gorm:"type:varchar(36);not null;index:ix_builds_workspace"`
	ConfigurationID   string     `gorm:"type:varchar(36);not null;index:ix_builds_configuration;uniqueIndex:ux_builds_config_fingerprint,priority:1"`
	Fingerprint       string     `gorm:"type:varchar(128);not null;index:ix_builds_fingerprint;uniqueIndex:ux_builds_config_fingerprint,priority:2"`
	EngineSpec        *string    `gorm:"type:varchar(255)"`
	EngineVersion     *string    `gorm:"type:varchar(50)"`
	PythonVersion     *string    `gorm:"type:varchar(50)"`
	PythonInterpreter *string    `gorm:"type:varchar(255)"`
	ConfigDigest      *string    `gorm:"type:varchar(80)"`
	Status            string     `gorm:"type:varchar(20);not null;default:queued;index:ix_builds_status;check:build_status,status IN ('queued','building','ready','failed','cancelled')"`
	ExitCode          *int       `gorm:"type:integer"`
	CreatedAt         time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
	StartedAt         *time.Time ``
	FinishedAt        *time.Time ``
	Summary           *string    `gorm:"type:text"`
	ErrorMessage      *string    `gorm:"type:text"`
	// Added by the worker (not in the ADE API's schema): builds are leased,
	// heartbeated and retried like runs. Nullable or defaulted, so the API's
	// inserts keep working.
	AvailableAt *time.Time   ``
	Lease       leaseColumns `gorm:"embedded"`
}

func (buildModel) TableName() string { return "builds" }

type documentModel struct {
	ID               string     `gorm:"type:varchar(36);primaryKey"`
	WorkspaceID      string     `gorm:"type:varchar(36);not null;index:ix_documents_workspace_last_run,priority:1"`
	OriginalFilename string     `gorm:"type:varchar(255);not null"`
	ContentType      *string    `gorm:"type:varchar(255)"`
	ByteSize         int64      `gorm:"not null"`
	Sha256           *string    `gorm:"type:varchar(64)"`
	StoredURI        string     `gorm:"column:stored_uri;type:varchar(512);not null"`
	Status           string     `gorm:"type:varchar(20);not null;default:uploaded;check:document_status,status IN ('uploading','uploaded','processing','processed','failed','archived')"`
	ExpiresAt        *time.Time ``
	LastRunAt        *time.Time `gorm:"index:ix_documents_workspace_last_run,priority:2"`
	CreatedAt        time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
	UpdatedAt        time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
	Version          int        `gorm:"type:integer;not null;default:1"`
}

func (documentModel) TableName() string { return "documents" }

type documentChangeModel struct {
	Cursor          int64     `gorm:"primaryKey;autoIncrement"`
	WorkspaceID     string    `gorm:"type:varchar(36);not null;index:ix_document_changes_workspace_cursor,priority:1"`
	DocumentID      *string   `gorm:"type:varchar(36)"`
	Type            string    `gorm:"type:varchar(20);not null;check:document_change_type,type IN ('upsert','deleted')"`
	DocumentVersion *int      `gorm:"type:integer"`
	ClientRequestID *string   `gorm:"type:varchar(128)"`
	Payload         string    `gorm:"type:json;not null;default:'{}'"`
	OccurredAt      time.Time `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

func (documentChangeModel) TableName() string { return "document_changes" }

type runModel struct {
	ID                string     `gorm:"type:varchar(36);primaryKey"`
	ConfigurationID   string     `gorm:"type:varchar(36);not null;index:ix_runs_configuration"`
	WorkspaceID       string     `gorm:"type:varchar(36);not null;index:ix_runs_workspace"`
	BuildID           *string    `gorm:"type:varchar(36);index:ix_runs_build"`
	InputDocumentID   string     `gorm:"type:varchar(36);not null;index:ix_runs_input_document"`
	InputSheetNames   *string    `gorm:"type:json"`
	OutputPath        *string    `gorm:"type:varchar(512)"`
	Status            string     `gorm:"type:varchar(20);not null;default:queued;index:ix_runs_status;check:run_status,status IN ('queued','running','succeeded','failed','cancelled')"`
	ExitCode          *int       `gorm:"type:integer"`
	SubmittedByUserID *string    `gorm:"type:varchar(36)"`
	CreatedAt         time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
	StartedAt         *time.Time ``
	CompletedAt       *time.Time ``
	CancelledAt       *time.Time ``
	ErrorMessage      *string    `gorm:"type:text"`
	AvailableAt       time.Time  `gorm:"not null;default:CURRENT_TIMESTAMP"`
	RunOptions        *string    `gorm:"type:json"`

	Lease leaseColumns `gorm:"embedded"`
}

func (runModel) TableName() string { return "runs" }

// The result tables' columns are defined once, by the gorm tags of the
// summary package's row types; the models add the run's id.

type runMetricsModel struct {
	RunID           string `gorm:"type:varchar(36);primaryKey"`
	summary.Metrics `gorm:"embedded"`
}

func (runMetricsModel) TableName() string { return "run_metrics" }

type runFieldModel struct {
	RunID         string `gorm:"type:varchar(36);primaryKey;index:ix_run_fields_run"`
	summary.Field `gorm:"embedded"`
}

func (runFieldModel) TableName() string { return "run_fields" }

type runTableColumnModel struct {
	RunID          string `gorm:"type:varchar(36);primaryKey;index:ix_run_table_columns_run"`
	summary.Column `gorm:"embedded"`
}

func (runTableColumnModel) TableName() string { return "run_table_columns" }

// models lists every table the worker needs, in creation order.
var models = []any{
	&configurationModel{}, &buildModel{}, &documentModel{}, &documentChangeModel{},
	&runModel{}, &runMetricsModel{}, &runFieldModel{}, &runTableColumnModel{},
}

// workerColumns are the columns the worker adds to an ADE API database; their
// presence is how the supervisor knows `migrate` has run.
var workerColumns = []struct {
	model  any
	table  string
	column string
}{
	{&buildModel{}, "builds", "available_at"},
	{&buildModel{}, "builds", "attempt_count"},
	{&buildModel{}, "builds", "max_attempts"},
	{&buildModel{}, "builds", "claimed_by"},
	{&buildModel{}, "builds", "claim_expires_at"},
}

// baseline creates missing tables, adds the worker's columns to existing
// ones and creates the worker's indexes and triggers: migration 1.
func (s *Store) baseline(db *gorm.DB) error {
	m := db.Migrator()
	// What exists is read with a query whose failure is an error; gorm's
	// HasTable would call a failed query "missing".
	cols, err := s.schemaColumns(db)
	if err != nil {
		return err
	}
	created := map[string]bool{} // made whole now, with the worker's columns
	for _, model := range models {
		t := tableName(db, model)
		if cols.has(t, "") {
			continue
		}
		if err := m.CreateTable(model); err != nil {
			return fmt.Errorf("create table for %T: %w", model, err)
		}
		created[t] = true
	}
	for _, c := range workerColumns {
		if created[c.table] || cols.has(c.table, c.column) {
			continue
		}
		if err := m.AddColumn(c.model, c.column); err != nil {
			return fmt.Errorf("add column %s.%s: %w", c.table, c.column, err)
		}
	}
	for _, stmt := range append(workerIndexes, s.dialect.migrations()...) {
		if err := db.Exec(stmt).Error; err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	return nil
}

// workerIndexes are added to both fresh and ADE API databases. Partial
// indexes hold only live rows, so claims and lease scans cost the same with a
// thousand finished runs as with a million.
var workerIndexes = []string{
	`CREATE INDEX IF NOT EXISTS ix_runs_queued_claim ON runs (available_at, created_at) WHERE status = 'queued'`,
	`CREATE INDEX IF NOT EXISTS ix_runs_running_lease ON runs (claim_expires_at) WHERE status = 'running'`,
	`CREATE INDEX IF NOT EXISTS ix_builds_queued_claim ON builds (created_at) WHERE status = 'queued'`,
	`CREATE INDEX IF NOT EXISTS ix_builds_building_lease ON builds (claim_expires_at) WHERE status = 'building'`,
	// The garbage collector's reads (pkg/gc): finished runs by when they
	// ended, and a build's last use in one probe.
	`CREATE INDEX IF NOT EXISTS ix_runs_finished_gc ON runs ((COALESCE(completed_at, cancelled_at)), id) WHERE status IN ('succeeded', 'failed', 'cancelled')`,
	`CREATE INDEX IF NOT EXISTS ix_runs_build_last_use ON runs (build_id, (COALESCE(completed_at, started_at))) WHERE COALESCE(completed_at, started_at) IS NOT NULL`,
	// The ADE API's rule: one queued or running run per document and configuration.
	`CREATE UNIQUE INDEX IF NOT EXISTS uq_runs_active_job ON runs (workspace_id, input_document_id, configuration_id) WHERE status IN ('queued','running')`,
}

// ErrNotMigrated is returned by CheckMigrated when `supervisor migrate` has
// not been run against the database; the error wrapping it names the
// database and what is missing.
var ErrNotMigrated = errors.New("not migrated for the worker: run 'supervisor migrate' first")

// notMigrated is ErrNotMigrated naming this database and what is missing.
func (s *Store) notMigrated(format string, args ...any) error {
	return fmt.Errorf("database %s is %w (%s)", s.name, ErrNotMigrated, fmt.Sprintf(format, args...))
}

// CheckMigrated verifies that every migration step is recorded and every
// table and worker column exists. A query that fails is reported as that
// failure, never as "not migrated": a database that cannot be read is not
// proof of a missing schema.
//
// It runs under the migration lock, shared: a worker started while
// `supervisor migrate` runs waits for the step in progress (SQLite: up to
// the busy timeout) rather than judging half a schema.
func (s *Store) CheckMigrated(ctx context.Context) error {
	return s.tx(ctx, func(tx *gorm.DB) error {
		if err := s.lockMigrations(tx, true); err != nil {
			return fmt.Errorf("database %s: %w (is 'supervisor migrate' running? try again when it ends)", s.name, err)
		}
		return s.checkSchema(tx)
	})
}

func (s *Store) checkSchema(tx *gorm.DB) error {
	cols, err := s.schemaColumns(tx)
	if err != nil {
		return err
	}
	if !cols.has(migrationsTable, "") {
		return s.notMigrated("table %s is missing", migrationsTable)
	}
	if err := s.checkVersion(tx); err != nil {
		return err
	}
	for _, model := range models {
		if t := tableName(s.db, model); !cols.has(t, "") {
			return s.notMigrated("table %s is missing", t)
		}
	}
	for _, c := range workerColumns {
		if !cols.has(c.table, c.column) {
			return s.notMigrated("column %s.%s is missing", c.table, c.column)
		}
	}
	return nil
}

// columnSet is the database's tables and their columns.
type columnSet map[string]map[string]bool

// has reports whether table exists and, unless column is "", has column.
func (cs columnSet) has(table, column string) bool {
	cols, ok := cs[table]
	return ok && (column == "" || cols[column])
}

// schemaColumns reads every table and column of the database in one query.
func (s *Store) schemaColumns(db *gorm.DB) (columnSet, error) {
	var rows []struct{ TableName, ColumnName string }
	if err := db.Raw(s.dialect.columnsSQL()).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("read the schema of database %s: %w", s.name, err)
	}
	cs := columnSet{}
	for _, r := range rows {
		if cs[r.TableName] == nil {
			cs[r.TableName] = map[string]bool{}
		}
		cs[r.TableName][r.ColumnName] = true
	}
	return cs, nil
}

// tableExists reports whether the database has table; a failed query is an
// error, not false.
func (s *Store) tableExists(ctx context.Context, table string) (bool, error) {
	return s.hasTable(s.db.WithContext(ctx), table)
}

// hasTable is tableExists in db (a transaction, say).
func (s *Store) hasTable(db *gorm.DB, table string) (bool, error) {
	var n int64
	if err := db.Raw(s.dialect.tableExistsSQL(), table).Scan(&n).Error; err != nil {
		return false, fmt.Errorf("look for table %s in database %s: %w", table, s.name, err)
	}
	return n > 0, nil
}

func tableName(db *gorm.DB, model any) string {
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(model); err != nil {
		return fmt.Sprintf("%T", model)
	}
	return stmt.Schema.Table
}

func firstLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}

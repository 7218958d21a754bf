package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// migration is one numbered step of `supervisor migrate`. A step that has
// run is recorded in ade_worker_migrations and never runs again, except the
// baseline, whose statements are all "create if missing" and which runs on
// every migrate so that it completes a database another program changed.
// A later change to the schema (a column, an index, a trigger) is a new step
// at the end of migrations, with the next version; never edit a step that
// has shipped.
type migration struct {
	version int
	name    string
	apply   func(s *Store, db *gorm.DB) error
	always  bool // run on every migrate (its statements are idempotent)
}

// migrations are the steps, in version order.
var migrations = []migration{
	{1, "baseline: the ADE API tables the worker uses, lease columns on builds, partial indexes, wake-up triggers",
		(*Store).baseline, true},
	{2, "fair share: the ade_worker_pauses table, per-workspace queue indexes", (*Store).fairShare, false},
}

// latestVersion is the schema version this worker needs.
func latestVersion() int { return migrations[len(migrations)-1].version }

// migrationModel is the ade_worker_migrations table: one row per step run.
type migrationModel struct {
	Version   int       `gorm:"type:integer;primaryKey;autoIncrement:false"`
	Name      string    `gorm:"type:varchar(255);not null"`
	AppliedAt time.Time `gorm:"not null;default:CURRENT_TIMESTAMP"`
}

func (migrationModel) TableName() string { return "ade_worker_migrations" }

// Migrate brings the database to the latest version: it runs the baseline
// and every step not yet recorded, recording each. It never drops or
// rewrites anything, so it is safe on an ADE API database and safe to run
// twice.
func (s *Store) Migrate(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	if !db.Migrator().HasTable(&migrationModel{}) {
		if err := db.Migrator().CreateTable(&migrationModel{}); err != nil {
			return fmt.Errorf("create table ade_worker_migrations: %w", err)
		}
	}
	applied, err := appliedVersions(db)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if applied[m.version] && !m.always {
			continue
		}
		if err := m.apply(s, db); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
		if applied[m.version] {
			continue
		}
		// The database's clock, like every time the queue stores.
		err := db.Exec(`INSERT INTO ade_worker_migrations (version, name, applied_at) VALUES (?, ?, CURRENT_TIMESTAMP)`,
			m.version, m.name).Error
		if err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
	}
	return nil
}

func appliedVersions(db *gorm.DB) (map[int]bool, error) {
	var versions []int
	if err := db.Raw(`SELECT version FROM ade_worker_migrations`).Scan(&versions).Error; err != nil {
		return nil, fmt.Errorf("read ade_worker_migrations: %w", err)
	}
	applied := map[int]bool{}
	for _, v := range versions {
		applied[v] = true
	}
	return applied, nil
}

// checkVersion fails with ErrNotMigrated unless every step is recorded.
func (s *Store) checkVersion(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	if !db.Migrator().HasTable(&migrationModel{}) {
		return fmt.Errorf("%w (table ade_worker_migrations is missing)", ErrNotMigrated)
	}
	applied, err := appliedVersions(db)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if !applied[m.version] {
			return fmt.Errorf("%w (migration %d, %q, has not run; this worker needs version %d)", ErrNotMigrated, m.version, m.name, latestVersion())
		}
	}
	return nil
}

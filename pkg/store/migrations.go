package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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
	{3, "supervisors: a row per live supervisor (ade_worker_supervisors)", (*Store).createSupervisors, false},
	{4, "hand-backs: how often each job was handed back at shutdown (ade_worker_handbacks)", (*Store).createHandBacks, false},
	{5, "fleet: free slots in the supervisors' rows, the maintenance leader (ade_worker_leader)", (*Store).createFleet, false},
	{6, "listening duty: wake-ups go to a supervisor that listens", (*Store).listenDuty, false},
}

// latestVersion is the schema version this worker needs.
func latestVersion() int { return migrations[len(migrations)-1].version }

// migrationsTable has one row per step run: version, name, applied_at.
const migrationsTable = "ade_worker_migrations"

// Migrate brings the database to the latest version: it runs the baseline
// and every step not yet recorded, recording each. It never drops or
// rewrites anything, so it is safe on an ADE API database and safe to run
// twice, or many times at once (Kubernetes init containers, scaled Compose
// services): each step runs in its own transaction under the database's
// migration lock (see lockMigrations), reads what is recorded there, and
// skips what another migrate did meanwhile.
func (s *Store) Migrate(ctx context.Context) error {
	for _, m := range migrations {
		// A running supervisor's statement can hold one table a step
		// locks while it waits for another the step holds (see txRetried).
		err := s.txRetried(ctx, func(tx *gorm.DB) error { return s.migrateStep(tx, m) })
		if err != nil {
			return fmt.Errorf("migrate database %s: %w", s.name, err)
		}
	}
	return nil
}

// deadlockTries is how many times a transaction that lost a deadlock runs.
const deadlockTries = 5

// txRetried runs fn in a transaction, and again after a short wait when
// PostgreSQL aborted it to break a deadlock (a migration's DDL against a
// claim or a step against a running supervisor's statement): it rolled
// back whole, so running it again is safe.
func (s *Store) txRetried(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.retried(ctx, func(int) error { return s.tx(ctx, fn) })
}

// retried runs fn (told its try, from 0) again while PostgreSQL aborts it
// to break a deadlock; fn must be one transaction, or one statement.
func (s *Store) retried(ctx context.Context, fn func(try int) error) error {
	err := fn(0)
	for try := 1; err != nil && isDeadlock(err) && try < deadlockTries; try++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		}
		err = fn(try)
	}
	return err
}

// isDeadlock reports whether err is PostgreSQL's deadlock_detected (40P01)
// or serialization_failure (40001).
func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// migrateStep runs step m in transaction tx unless it is recorded (or
// always runs), and records it.
func (s *Store) migrateStep(tx *gorm.DB, m migration) error {
	if err := s.lockMigrations(tx, false); err != nil {
		return err
	}
	// The table of steps is created here, under the lock, never beside it:
	// two CREATE TABLE IF NOT EXISTS at once fail on PostgreSQL.
	if err := tx.Exec(s.dialect.createMigrationsSQL()).Error; err != nil {
		return fmt.Errorf("create table %s: %w", migrationsTable, err)
	}
	applied, err := appliedVersions(tx)
	if err != nil {
		return err
	}
	if applied[m.version] && !m.always {
		return nil
	}
	if err := m.apply(s, tx); err != nil {
		return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
	}
	if applied[m.version] {
		return nil
	}
	// The database's clock, like every time the queue stores.
	err = tx.Exec(`INSERT INTO `+migrationsTable+` (version, name, applied_at) VALUES (?, ?, CURRENT_TIMESTAMP)`,
		m.version, m.name).Error
	if err != nil {
		return fmt.Errorf("record migration %d: %w", m.version, err)
	}
	return nil
}

// migrateLockKey is the PostgreSQL advisory lock key of migrations
// ("ade_mig" in ASCII).
const migrateLockKey int64 = 0x6164655f6d6967

// lockMigrations takes the migration lock for the rest of transaction tx:
// exclusive for a migrate step, shared for a schema check, which so waits
// for a step in progress instead of reading half a schema. PostgreSQL: a
// transaction advisory lock. SQLite: the transaction began with BEGIN
// IMMEDIATE (the store's _txlock), which holds the database's write lock
// already; a check waits for it through the busy timeout.
func (s *Store) lockMigrations(tx *gorm.DB, shared bool) error {
	q := s.dialect.migrationLockSQL(shared)
	if q == "" {
		return nil
	}
	if err := tx.Exec(q, migrateLockKey).Error; err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
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

// checkVersion fails with ErrNotMigrated unless every step is recorded; the
// table must exist.
func (s *Store) checkVersion(db *gorm.DB) error {
	applied, err := appliedVersions(db)
	if err != nil {
		return fmt.Errorf("database %s: %w", s.name, err)
	}
	for _, m := range migrations {
		if !applied[m.version] {
			return s.notMigrated("migration %d, %q, has not run; this worker needs version %d", m.version, m.name, latestVersion())
		}
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"time"
)

type sqliteDialect struct{}

func (sqliteDialect) name() string { return "sqlite" }

func (sqliteDialect) configurePool(db *sql.DB) {
	// One writer at a time is SQLite's rule anyway; a few connections let
	// reads (status, heartbeats of other jobs) proceed beside a write.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(0)
}

func (sqliteDialect) timeArg(t time.Time) any { return t.UTC().Format(sqliteTimeLayout) }

// SQLite's strftime('%f') has milliseconds; three zeros make the six
// fractional digits of sqliteTimeLayout, so text comparisons with the
// API's microsecond values stay in time order.
func (sqliteDialect) nowSQL() string { return `(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')` }

// An IN list, not a join: SQLite would put the table-valued json_each in
// the inner loop and parse the list once per row.
func (sqliteDialect) jobListSQL() (string, string) {
	return "", `(id, attempt_count) IN (SELECT json_extract(value, '$.vid'), json_extract(value, '$.vattempt') FROM json_each(?))`
}

func (sqliteDialect) untilSQL(q string) string {
	return `SELECT (julianday((` + q + `)) - julianday('now')) * 86400.0`
}

func (sqliteDialect) laterSQL(secs string) string {
	return `(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', ` + secs + `)) || '000')`
}

// One UPDATE ... RETURNING on a subselect: SQLite runs it under its single
// writer lock, so two supervisors can never pick the same row. with is
// common table expressions pick reads ("" for none).
func (sqliteDialect) claimSQL(q queueKind, with, pick string) string {
	if with != "" {
		with = "WITH " + with + "\n"
	}
	return with + `UPDATE ` + q.table + ` SET ` + q.set(sqliteDialect{}) + `
WHERE id IN (` + pick + `)
RETURNING ` + q.returning + q.extra
}

// INDEXED BY, since a migrated database has no ANALYZE statistics: without
// them SQLite takes ix_runs_status for status = 'queued' and sorts the whole
// queue on every claim (190 ms at 100,000 queued runs).
func (sqliteDialect) indexedBy(index string) string { return " INDEXED BY " + index }

// claimLock is nothing: a claim's transaction holds SQLite's write lock
// from its BEGIN (_txlock=immediate), so claims are one at a time already.
func (sqliteDialect) claimLockSQL() string { return "" }

func (sqliteDialect) watch(ctx context.Context, path string, w Watch) error {
	return watchSQLite(ctx, path, w)
}

func (sqliteDialect) clearRunResultsSQL() []string {
	return []string{ // SQLite runs in-process: three statements cost little.
		`DELETE FROM run_metrics WHERE run_id = ?`,
		`DELETE FROM run_fields WHERE run_id = ?`,
		`DELETE FROM run_table_columns WHERE run_id = ?`,
	}
}

// SQLite has no data-modifying CTEs; its statements cost no round trip.
func (sqliteDialect) moveDocumentSQL(bool) string { return "" }

// No dialect-only migrations yet.
func (sqliteDialect) migrations() []string { return nil }

func (sqliteDialect) columnsSQL() string {
	return `SELECT m.name AS table_name, p.name AS column_name
FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`
}

func (sqliteDialect) tableExistsSQL() string {
	return `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
}

// The transaction's BEGIN IMMEDIATE is SQLite's migration lock.
func (sqliteDialect) migrationLockSQL(bool) string { return "" }

func (sqliteDialect) createMigrationsSQL() string {
	return `CREATE TABLE IF NOT EXISTS ` + migrationsTable + ` (
	version integer PRIMARY KEY, name varchar(255) NOT NULL, applied_at datetime NOT NULL DEFAULT CURRENT_TIMESTAMP)`
}

func (sqliteDialect) timestampType() string { return "datetime" }

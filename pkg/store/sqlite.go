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
// writer lock, so two supervisors can never pick the same row.
func (sqliteDialect) claimRunsSQL() string {
	d := sqliteDialect{}
	return `UPDATE runs SET status = 'running', claimed_by = @worker, claim_expires_at = ` + d.laterSQL("@lease") + `,
	started_at = ` + d.nowSQL() + `, attempt_count = attempt_count + 1, error_message = NULL
WHERE id IN (
	SELECT r.id FROM runs r LEFT JOIN builds b ON b.id = r.build_id
	WHERE r.status = 'queued' AND r.available_at <= ` + d.nowSQL() + ` AND r.attempt_count < r.max_attempts
	  AND (r.build_id IS NULL OR b.status = 'ready')
	ORDER BY r.available_at, r.created_at LIMIT @limit)
RETURNING ` + runClaimColumns
}

func (sqliteDialect) claimBuildsSQL() string {
	d := sqliteDialect{}
	return `UPDATE builds SET status = 'building', claimed_by = @worker, claim_expires_at = ` + d.laterSQL("@lease") + `,
	started_at = ` + d.nowSQL() + `, attempt_count = attempt_count + 1, error_message = NULL
WHERE id IN (
	SELECT id FROM builds
	WHERE status = 'queued' AND (available_at IS NULL OR available_at <= ` + d.nowSQL() + `) AND attempt_count < max_attempts
	ORDER BY created_at LIMIT @limit)
RETURNING ` + buildClaimColumns
}

func (sqliteDialect) watch(ctx context.Context, path string, wake func(), cancelled func(JobRef)) error {
	return watchSQLite(ctx, path, wake, cancelled)
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

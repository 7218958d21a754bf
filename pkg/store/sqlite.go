package store

import (
	"context"
	"time"

	"gorm.io/gorm"
)

type sqliteDialect struct{}

func (sqliteDialect) name() string { return "sqlite" }

// One writer at a time is SQLite's rule anyway; a few connections let reads
// (status, heartbeats of other jobs) proceed beside a write.
func (sqliteDialect) defaultPoolSize() int { return 4 }

// An SQLite connection is an open file in this process.
func (sqliteDialect) trimIdle() bool { return false }

// An flock on "<database file>.gc.lock": every SQLite supervisor shares the
// file on one machine, the kernel frees the lock when its holder dies (no
// lease to expire, no clock to trust) and taking it writes nothing to the
// database, whose single write lock the queue needs.
func (sqliteDialect) tryGCLock(_ context.Context, s *Store) (func(), bool, error) {
	return tryFileLock(s.watchTarget + ".gc.lock")
}

// Without ANALYZE statistics SQLite prefers ix_runs_status and sorts every
// finished run; likely() steers it to the partial index.
func (sqliteDialect) likely(cond string) string { return `likely(` + cond + `)` }

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

// A writing statement runs holding the database's one write lock, so its
// 'now' already follows every write it could have waited for.
func (d sqliteDialect) clockLaterSQL(secs string) string { return d.laterSQL(secs) }

// renewAll runs the renewals one after the other in one transaction:
// SQLite has no data-modifying common table expressions, and its
// statements cost no round trip.
func (sqliteDialect) renewAll(db *gorm.DB, stmts []statement) ([]renewedRow, error) {
	var rows []renewedRow
	if len(stmts) == 1 { // a statement is a transaction already
		err := db.Raw(stmts[0].query, stmts[0].args...).Scan(&rows).Error
		return rows, err
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		for _, st := range stmts {
			var got []renewedRow
			if err := tx.Raw(st.query, st.args...).Scan(&got).Error; err != nil {
				return err
			}
			rows = append(rows, got...)
		}
		return nil
	})
	return rows, err
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

// SQLite has no LATERAL: the table's rows whose id the correlated
// subquery lists, one primary key probe each.
func (sqliteDialect) eachRowSQL(q queueKind, outer string, sub func(cols string) string) string {
	return outer + ` JOIN ` + q.table + ` c ON c.id IN (` + sub("j.id") + `)`
}

func (sqliteDialect) listSQL(arg string) string {
	return `(SELECT value AS id, key AS pos FROM json_each(` + arg + `)) AS l`
}

// claimLock is nothing: a claim's transaction holds SQLite's write lock
// from its BEGIN (_txlock=immediate), so claims are one at a time already.
func (sqliteDialect) claimLockSQL() string { return "" }

func (sqliteDialect) watch(ctx context.Context, path string, w Watch) error {
	return watchSQLite(ctx, path, w)
}

// SQLite has no data-modifying CTEs; its statements cost no round trip.
func (sqliteDialect) moveDocumentSQL(bool) string { return "" }

// FinishRun's statements one by one, the results as multi-row INSERTs of
// bound values (insertRunResults): no round trips to save.
func (sqliteDialect) finishRunSQL(bool) string { return "" }

// SQLite's watcher sees every write, a resume included.
func (sqliteDialect) pauseTriggers() []string { return nil }

// Every write to the file wakes every supervisor's watcher.
func (sqliteDialect) notifies() bool { return false }

// beat runs the statements one by one in one transaction (no
// data-modifying CTEs, and no round trips to save).
func (sqliteDialect) beat(ctx context.Context, s *Store, q beatQueries) (beatCounts, error) {
	var got beatCounts
	err := s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(q.refresh, q.refreshArgs...)
		if res.Error != nil {
			return res.Error
		}
		got.Seen = int(res.RowsAffected)
		res = tx.Exec(q.lead, q.leadArgs...)
		if res.Error != nil {
			return res.Error
		}
		got.Led = int(res.RowsAffected)
		if err := tx.Raw(q.due).Scan(&got.Work).Error; err != nil {
			return err
		}
		return tx.Raw(q.busy).Scan(&got.Busy).Error
	})
	return got, err
}

// Cancels are seen as file changes, which name no job.
func (sqliteDialect) namesCancels() bool { return false }

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

package store

import (
	"context"
	"database/sql"
	"time"
)

type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

func (postgresDialect) configurePool(db *sql.DB) {
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
}

func (postgresDialect) timeArg(t time.Time) any { return t.UTC() }

// now() is the transaction's start: one instant for every row a statement
// or a transaction writes.
func (postgresDialect) nowSQL() string { return `now()` }

func (postgresDialect) jobListSQL() (string, string) {
	return "\nFROM json_to_recordset(CAST(? AS json)) AS v(vid text, vattempt integer)", "id = v.vid AND attempt_count = v.vattempt"
}

func (postgresDialect) untilSQL(q string) string {
	return `SELECT EXTRACT(EPOCH FROM ((` + q + `) - now()))::double precision`
}

func (postgresDialect) laterSQL(secs string) string {
	return `(now() + make_interval(secs => CAST(` + secs + ` AS double precision)))`
}

// SKIP LOCKED lets many supervisors claim side by side: each takes rows no
// other transaction holds, without waiting. with is common table
// expressions pick reads ("" for none).
func (postgresDialect) claimSQL(q queueKind, with, pick string) string {
	if with != "" {
		with += ",\n"
	}
	return `WITH ` + with + `picked AS (` + pick + `
	FOR UPDATE OF j SKIP LOCKED)
UPDATE ` + q.table + ` SET ` + q.set(postgresDialect{}) + `
FROM picked WHERE ` + q.table + `.id = picked.id
RETURNING ` + qualify(q.table, q.returning) + q.extra
}

// claimLockSQL serialises the claims that count running jobs against a
// cap: each takes it in its transaction, after the last one committed, so
// its counts include every claim before it (READ COMMITTED reads afresh
// per statement). Only capped claims take it.
func (postgresDialect) claimLockSQL() string {
	return `SELECT pg_advisory_xact_lock(` + claimLockKey + `)`
}

// PostgreSQL's planner has statistics (autovacuum's ANALYZE).
func (postgresDialect) indexedBy(string) string { return "" }

// claimLockKey is the advisory lock of capped claims: any number no other
// program on the database uses.
const claimLockKey = "4242061801"

// moveDocumentSQL does in one round trip what moveDocument does in two (and
// StartDocument, fenced, in five). The payload is built to match
// moveDocument's json.Marshal output byte for byte.
func (postgresDialect) moveDocumentSQL(fenced bool) string {
	held, cond, final := "", "", "SELECT 1 AS held"
	if fenced {
		held = `r AS (SELECT id FROM runs WHERE id = @run AND status = 'running' AND claimed_by = @worker
	AND attempt_count = @attempt FOR SHARE),
`
		cond = " AND EXISTS (SELECT 1 FROM r)"
		final = "SELECT (SELECT count(*) FROM r) AS held"
	}
	return `WITH ` + held + `d AS (UPDATE documents SET status = @status, version = version + 1, updated_at = now(), last_run_at = now()
	WHERE id = @doc` + cond + ` RETURNING workspace_id, version),
c AS (INSERT INTO document_changes (workspace_id, document_id, type, document_version, payload, occurred_at)
	SELECT workspace_id, @doc, 'upsert', version,
		CAST('{"run_id":' || to_json(CAST(@run AS text)) || ',"status":' || to_json(CAST(@status AS text)) ||
			',"version":' || version || '}' AS json), now()
	FROM d)
` + final
}

// clearRunResultsSQL is one statement: every statement is a round trip.
func (postgresDialect) clearRunResultsSQL() []string {
	return []string{`WITH r AS (SELECT CAST(? AS varchar) AS id),
	m AS (DELETE FROM run_metrics WHERE run_id = (SELECT id FROM r)),
	f AS (DELETE FROM run_fields WHERE run_id = (SELECT id FROM r))
DELETE FROM run_table_columns WHERE run_id = (SELECT id FROM r)`}
}

func (postgresDialect) watch(ctx context.Context, dsn string, w Watch) error {
	return listenPostgres(ctx, dsn, w)
}

// migrations install the triggers that wake idle supervisors: a run or build
// queued (inserted or re-queued), or a build turning ready so its runs
// became claimable. Drop-and-create keeps them current and idempotent.
func (postgresDialect) migrations() []string {
	return append([]string{
		// One supervisor with free slots is woken, not all: the live one
		// (seen within its lease, not draining) that ranks first for this
		// job by rendezvous hash, so jobs spread over the fleet. With none
		// advertising a free slot, or before migration 5 made the columns,
		// every supervisor is woken as before; so it is by a statement
		// trigger (a pause lifted: many jobs at once).
		`CREATE OR REPLACE FUNCTION ade_worker_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	w text;
BEGIN
	IF TG_LEVEL = 'ROW' AND to_regclass('` + leaderTable + `') IS NOT NULL THEN
		SELECT worker_id INTO w FROM ` + supervisorsTable + `
		WHERE free_slots > 0 AND draining = 0 AND last_seen_at > now() - make_interval(secs => lease_seconds)
		ORDER BY md5(worker_id || NEW.id) LIMIT 1;
	END IF;
	IF w IS NULL THEN
		PERFORM pg_notify('` + notifyChannel + `', TG_TABLE_NAME);
	ELSE
		PERFORM pg_notify('` + notifyChannel + `_' || left(md5(w), 20), TG_TABLE_NAME);
	END IF;
	RETURN NULL;
END $$`,
		`DROP TRIGGER IF EXISTS ade_worker_runs_notify ON runs`,
		`CREATE TRIGGER ade_worker_runs_notify AFTER INSERT OR UPDATE OF status, available_at ON runs
	FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION ade_worker_notify()`,
		`DROP TRIGGER IF EXISTS ade_worker_builds_notify ON builds`,
		`CREATE TRIGGER ade_worker_builds_notify AFTER INSERT OR UPDATE OF status, available_at ON builds
	FOR EACH ROW WHEN (NEW.status IN ('queued', 'ready')) EXECUTE FUNCTION ade_worker_notify()`,
	}, cancelTriggers()...)
}

// cancelTriggers tell every supervisor at once that a job was cancelled
// (the payload names it), so the one running it stops it within a second.
func cancelTriggers() []string {
	stmts := []string{`CREATE OR REPLACE FUNCTION ade_worker_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('` + controlChannel + `', json_build_object('action', 'cancel', 'kind', TG_ARGV[0], 'id', NEW.id)::text);
	RETURN NULL;
END $$`}
	for _, t := range []struct{ table, kind string }{{"runs", "run"}, {"builds", "build"}} {
		name := "ade_worker_" + t.table + "_cancel"
		stmts = append(stmts, `DROP TRIGGER IF EXISTS `+name+` ON `+t.table,
			`CREATE TRIGGER `+name+` AFTER UPDATE OF status ON `+t.table+`
	FOR EACH ROW WHEN (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled')
	EXECUTE FUNCTION ade_worker_notify_cancel('`+t.kind+`')`)
	}
	return stmts
}

func (postgresDialect) columnsSQL() string {
	return `SELECT CAST(table_name AS text) AS table_name, CAST(column_name AS text) AS column_name
FROM information_schema.columns WHERE table_schema = current_schema()`
}

func (postgresDialect) tableExistsSQL() string {
	return `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?`
}

func (postgresDialect) migrationLockSQL(shared bool) string {
	if shared {
		return `SELECT pg_advisory_xact_lock_shared(?)`
	}
	return `SELECT pg_advisory_xact_lock(?)`
}

func (postgresDialect) createMigrationsSQL() string {
	return `CREATE TABLE IF NOT EXISTS ` + migrationsTable + ` (
	version integer PRIMARY KEY, name varchar(255) NOT NULL, applied_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP)`
}

func (postgresDialect) timestampType() string { return "timestamptz" }

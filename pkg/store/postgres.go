package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
)

type postgresDialect struct{}

func (postgresDialect) name() string { return "postgres" }

func (postgresDialect) defaultPoolSize() int { return 8 }

// Each connection is a server process and one of max_connections.
func (postgresDialect) trimIdle() bool { return true }

func (postgresDialect) likely(cond string) string { return cond }

// tryGCLock takes a transaction advisory lock in a transaction held open for
// the pass, never a session lock: behind pgbouncer in transaction mode the
// session is not ours between transactions, and a session lock would stay
// with a server connection other clients then use. The open transaction
// pins one pool connection (and, behind pgbouncer, one server connection);
// it reads nothing, so it holds back no vacuum. Committing releases it; so
// do the holder's death and a server's idle_in_transaction_session_timeout.
func (postgresDialect) tryGCLock(ctx context.Context, s *Store) (func(), bool, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, false, err
	}
	// Not ctx: the transaction must outlive the call (release ends it).
	tx, err := sqlDB.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, false, fmt.Errorf("gc lock: %w", err)
	}
	var ok bool
	if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, gcLockKey).Scan(&ok); err != nil || !ok {
		_ = tx.Rollback()
		if err != nil {
			err = fmt.Errorf("gc lock: %w", err)
		}
		return nil, false, err
	}
	return func() { _ = tx.Rollback() }, true, nil // it wrote nothing
}

// postgresDSN is a connection URL: dsn with application_name set to app
// and, when pooled, pgx's default_query_exec_mode set to exec, unless dsn
// sets them. The exec mode sends each statement unnamed (parse, bind and
// execute in one round trip): pgx's default, cache_statement, keeps named
// prepared statements per connection, which a pgbouncer in transaction mode
// hands to other clients' server connections ("prepared statement
// \"stmtcache_...\" already exists"). On a direct connection the cached
// plans are cheaper (BenchmarkExecMode), so exec is only the default behind
// a pooler.
func postgresDSN(dsn, app string, pooled bool) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("database URL: %w", err)
	}
	q := u.Query()
	if pooled && !q.Has("default_query_exec_mode") {
		q.Set("default_query_exec_mode", "exec")
	}
	if app != "" && !q.Has("application_name") {
		q.Set("application_name", app)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
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

func (postgresDialect) laterSQL(secs string) string { return pgSecondsAfter("now()", secs) }

// clock_timestamp() is read when the row is compared, after any wait for
// its lock; now() is older by that wait.
func (postgresDialect) clockLaterSQL(secs string) string {
	return pgSecondsAfter("clock_timestamp()", secs)
}

// pgSecondsAfter is the time secs seconds after the time expression t.
func pgSecondsAfter(t, secs string) string {
	return `(` + t + ` + make_interval(secs => CAST(` + secs + ` AS double precision)))`
}

// renewAll runs the renewals as one statement (one round trip): each a
// data-modifying common table expression, their rows put together.
func (postgresDialect) renewAll(db *gorm.DB, stmts []statement) ([]renewedRow, error) {
	q, args := stmts[0].query, stmts[0].args
	if len(stmts) > 1 {
		var with, sel []string
		args = nil
		for i, st := range stmts {
			name := fmt.Sprintf("r%d", i)
			with = append(with, name+" AS ("+st.query+")")
			sel = append(sel, "SELECT * FROM "+name)
			args = append(args, st.args...)
		}
		q = "WITH " + strings.Join(with, ", ") + " " + strings.Join(sel, " UNION ALL ")
	}
	var rows []renewedRow
	err := db.Raw(q, args...).Scan(&rows).Error
	return rows, err
}

// SKIP LOCKED lets many supervisors claim side by side: each takes rows no
// other transaction holds, without waiting. with is common table
// expressions pick reads ("" for none).
func (postgresDialect) claimSQL(q queueKind, with, pick string) string {
	if with != "" {
		with += ",\n"
	}
	update := `UPDATE ` + q.table + ` SET ` + q.set(postgresDialect{}) + `
FROM picked WHERE ` + q.table + `.id = picked.id
RETURNING ` + qualify(q.table, q.returning) + q.extra
	head := `WITH ` + with + `picked AS (` + pick + `
	FOR UPDATE OF j SKIP LOCKED)`
	if q.kind != KindRun {
		return head + "\n" + update
	}
	// A claimed run's configuration, document and build, read in the same
	// statement: the supervisor's next read, a round trip saved.
	return head + `,
taken AS (` + update + `)
SELECT taken.*, ` + runContextColumns + `, true AS context_read
FROM taken
LEFT JOIN configurations c ON c.id = taken.configuration_id
LEFT JOIN documents d ON d.id = taken.input_document_id
LEFT JOIN builds b ON b.id = taken.build_id`
}

// A LATERAL subquery returns the key columns itself.
func (postgresDialect) eachRowSQL(q queueKind, outer string, sub func(cols string) string) string {
	return outer + ` CROSS JOIN LATERAL (` + sub(q.keyColumns("j")) + `) AS c`
}

func (postgresDialect) listSQL(arg string) string {
	return `json_array_elements_text(CAST(` + arg + ` AS json)) WITH ORDINALITY AS l(id, pos)`
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

// runFenceSQL is Fence.where for a run, with the named arguments @run,
// @worker and @attempt.
const runFenceSQL = `id = @run AND status = 'running' AND claimed_by = @worker AND attempt_count = @attempt`

// moveDocumentSQL does in one round trip what moveDocument does in two (and
// StartDocument, fenced, in five).
func (postgresDialect) moveDocumentSQL(fenced bool) string {
	if !fenced {
		return `WITH ` + documentMoveCTEs("") + `
SELECT 1 AS held`
	}
	return `WITH r AS (SELECT id FROM runs WHERE ` + runFenceSQL + ` FOR SHARE),
` + documentMoveCTEs(" AND EXISTS (SELECT 1 FROM r)") + `
SELECT (SELECT count(*) FROM r) AS held`
}

// documentMoveCTEs are the CTEs d and c of moveDocumentSQL: the document
// @doc moved to @status when cond holds, and its change recorded. The
// payload is built to match moveDocument's json.Marshal output byte for
// byte.
func documentMoveCTEs(cond string) string {
	return `d AS (UPDATE documents SET status = @status, version = version + 1, updated_at = now(), last_run_at = now()
	WHERE id = @doc` + cond + ` RETURNING workspace_id, version),
c AS (INSERT INTO document_changes (workspace_id, document_id, type, document_version, payload, occurred_at)
	SELECT workspace_id, @doc, 'upsert', version,
		CAST('{"run_id":' || to_json(CAST(@run AS text)) || ',"status":' || to_json(CAST(@status AS text)) ||
			',"version":' || version || '}' AS json), now()
	FROM d)`
}

// finishRunSQL is all of FinishRun in one statement, its own transaction:
// the fenced update of the run; when the fence holds (u has the row), the
// clearing of an earlier attempt's results, the insert of this attempt's
// (each table's rows a JSON array, see resultRowsJSON) and, with a
// document, its move. One round trip instead of a transaction's four:
// every round trip is client and server work. It returns the column ended
// (0 or 1).
//
// The order within one statement is not the text's: the inserts wait for
// cleared, which counts what the deletes returned, so an earlier attempt's
// rows are gone before a new row with the same key goes in (rows deleted
// by the statement's own transaction do not conflict).
func (postgresDialect) finishRunSQL(withDocument bool) string {
	if withDocument {
		return finishRunWithDocumentSQL()
	}
	return finishRunAloneSQL()
}

var (
	finishRunWithDocumentSQL = sync.OnceValue(func() string { return buildFinishRunSQL(true, resultTables()) })
	finishRunAloneSQL        = sync.OnceValue(func() string { return buildFinishRunSQL(false, resultTables()) })
)

func buildFinishRunSQL(withDocument bool, tables []resultTable) string {
	q := `WITH u AS (UPDATE runs SET status = @end, exit_code = @code, completed_at = now(), error_message = @error,
	output_path = @output, claim_expires_at = NULL
	WHERE ` + runFenceSQL + ` RETURNING id)`
	var cleared []string
	for i, t := range tables {
		q += fmt.Sprintf(",\nx%d AS (DELETE FROM %s WHERE run_id IN (SELECT id FROM u) RETURNING 1)", i, t.name)
		cleared = append(cleared, fmt.Sprintf("(SELECT count(*) FROM x%d)", i))
	}
	q += ",\ncleared AS (SELECT " + strings.Join(cleared, " + ") + " AS n)"
	for i, t := range tables {
		cols := strings.Join(t.columns(), ", ")
		q += fmt.Sprintf(",\ni%d AS (INSERT INTO %s (%s) SELECT %s FROM json_populate_recordset(NULL::%s, CAST(@%s AS json))\n\tWHERE EXISTS (SELECT 1 FROM u) AND (SELECT n FROM cleared) >= 0)",
			i, t.name, cols, cols, t.name, t.name)
	}
	if withDocument {
		q += ",\n" + documentMoveCTEs(" AND EXISTS (SELECT 1 FROM u)")
	}
	return q + `
SELECT count(*) AS ended FROM u`
}

func (postgresDialect) watch(ctx context.Context, dsn string, w Watch) error {
	return listenPostgres(ctx, dsn, w)
}

// migrations install the triggers that wake idle supervisors: a run or build
// queued (inserted or re-queued), or a build turning ready so its runs
// became claimable. Drop-and-create keeps them current and idempotent.
func (postgresDialect) migrations() []string {
	return append([]string{
		// One supervisor with free slots is woken, not all: one that is
		// live (seen within its lease, not draining) and listens
		// (listeningSQL), the one that ranks first for this job by
		// rendezvous hash, so jobs spread over the listeners. With none,
		// or before migration 5 made the columns, every listening
		// supervisor is woken; so it is by a statement trigger (a pause
		// lifted: many jobs at once).
		`CREATE OR REPLACE FUNCTION ade_worker_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	w text;
BEGIN
	IF TG_LEVEL = 'ROW' AND to_regclass('` + leaderTable + `') IS NOT NULL THEN
		SELECT worker_id INTO w FROM ` + supervisorsTable + `
			WHERE free_slots > 0 AND draining = 0 AND last_seen_at > now() - make_interval(secs => lease_seconds)
				AND ` + listeningSQL("worker_id") + `
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

// pauseTriggers wake idle supervisors at a resume, as a queued job does.
// The store wakes supervisors by NOTIFY, whom it chooses.
func (postgresDialect) notifies() bool { return true }

// beat is one round trip, one transaction: the refresh and the look for due
// work ride on the election.
func (postgresDialect) beat(ctx context.Context, s *Store, q beatQueries) (beatCounts, error) {
	var got beatCounts
	// ahead: the live supervisors with free slots that rank before this
	// one for listening duty (Beat.Listeners); the main query reads the
	// rows as they were before this beat's refresh.
	sql := `WITH seen AS (` + q.refresh + ` RETURNING 1), led AS (` + q.lead + ` RETURNING 1)
SELECT (SELECT count(*) FROM seen) AS seen, (SELECT count(*) FROM led) AS led, (` + q.due + `) AS work, (` + q.busy + `) AS busy,
	(SELECT count(*) FROM ` + supervisorsTable + ` o WHERE o.worker_id <> ? AND md5(o.worker_id) < md5(?)
		AND o.free_slots > 0 AND o.draining = 0 AND o.last_seen_at > now() - make_interval(secs => o.lease_seconds)
		AND ` + connectedSQL("o.worker_id") + `) AS ahead`
	args := append(append([]any{}, q.refreshArgs...), q.leadArgs...)
	err := s.db.WithContext(ctx).Raw(sql, append(args, q.worker, q.worker)...).Scan(&got).Error
	return got, err
}

func (postgresDialect) pauseTriggers() []string {
	return []string{`DROP TRIGGER IF EXISTS ade_worker_pauses_notify ON ade_worker_pauses`,
		`CREATE TRIGGER ade_worker_pauses_notify AFTER DELETE ON ade_worker_pauses
	FOR EACH STATEMENT EXECUTE FUNCTION ade_worker_notify()`}
}

// The cancel triggers name each cancelled job as it happens (NOTIFY).
func (postgresDialect) namesCancels() bool { return true }

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

// The catalogs, not information_schema, which leaves out what the user may
// not read: a missing privilege must fail the read that needs it, not make
// a table look missing.
func (postgresDialect) columnsSQL() string {
	return `SELECT CAST(c.relname AS text) AS table_name, CAST(a.attname AS text) AS column_name
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = CAST(current_schema() AS regnamespace) AND c.relkind IN ('r', 'p')
	AND a.attnum > 0 AND NOT a.attisdropped`
}

func (postgresDialect) tableExistsSQL() string {
	return `SELECT COUNT(*) FROM pg_catalog.pg_class WHERE relnamespace = CAST(current_schema() AS regnamespace)
	AND relkind IN ('r', 'p') AND relname = CAST(? AS text)`
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

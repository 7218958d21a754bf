package store

import (
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

// SKIP LOCKED lets many supervisors claim side by side: each takes rows no
// other transaction holds, without waiting.
func (postgresDialect) claimRunsSQL() string {
	return `WITH picked AS (
	SELECT r.id FROM runs r LEFT JOIN builds b ON b.id = r.build_id
	WHERE r.status = 'queued' AND r.available_at <= @now AND r.attempt_count < r.max_attempts
	  AND (r.build_id IS NULL OR b.status = 'ready')
	ORDER BY r.available_at, r.created_at LIMIT @limit
	FOR UPDATE OF r SKIP LOCKED)
UPDATE runs SET status = 'running', claimed_by = @worker, claim_expires_at = @expires,
	started_at = @now, attempt_count = runs.attempt_count + 1, error_message = NULL
FROM picked WHERE runs.id = picked.id
RETURNING ` + qualify("runs", runClaimColumns)
}

func (postgresDialect) claimBuildsSQL() string {
	return `WITH picked AS (
	SELECT id FROM builds
	WHERE status = 'queued' AND (available_at IS NULL OR available_at <= @now) AND attempt_count < max_attempts
	ORDER BY created_at LIMIT @limit
	FOR UPDATE SKIP LOCKED)
UPDATE builds SET status = 'building', claimed_by = @worker, claim_expires_at = @expires,
	started_at = @now, attempt_count = builds.attempt_count + 1, error_message = NULL
FROM picked WHERE builds.id = picked.id
RETURNING ` + qualify("builds", buildClaimColumns)
}

// No dialect-only migrations yet.
func (postgresDialect) migrations() []string { return nil }

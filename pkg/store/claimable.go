package store

import (
	"fmt"
	"strings"
)

// This file is the one definition of "claimable" and of the order claims
// take jobs in. Every reader of the rule builds its SQL from here: the claim
// statements of both dialects, the queue gauges (QueueStats), inspect's
// "why it waits" (Inspect's claimable column) and the KEDA query
// (DemandSQL, pasted into deploy/kubernetes/scaledobject.yaml and checked
// against it by a test).

// ClaimPolicy is how claims choose among claimable jobs.
type ClaimPolicy struct {
	// FIFO takes the oldest claimable job over all workspaces
	// (ADE_WORKER_CLAIM_ORDER=fifo). The default, fair order, takes the
	// workspace with the fewest jobs running across the fleet first; ties
	// go to the workspace whose oldest claimable job is oldest; within a
	// workspace, oldest first.
	FIFO bool
	// WorkspaceMaxRunning caps how many runs of one workspace run at once
	// across the fleet (ADE_WORKER_WORKSPACE_MAX_RUNNING); 0: no cap.
	// Builds are not capped.
	WorkspaceMaxRunning int
}

// SetClaimPolicy sets the order and cap of this store's claims and of the
// queue gauges it reads. Call it before the store is shared.
func (s *Store) SetClaimPolicy(p ClaimPolicy) { s.policy = p }

// ClaimPolicy is the policy SetClaimPolicy set.
func (s *Store) ClaimPolicy() ClaimPolicy { return s.policy }

// queueKind is one of the two queues, runs and builds, as the claimable
// rule sees it. The job's table is always aliased j.
type queueKind struct {
	kind   Kind
	table  string
	active Status // running or building
	// from is the job table as j, joined to what the rule reads.
	from string
	// fifoIndex serves the oldest claimable jobs, wsIndex those of one
	// workspace (partial indexes on status = 'queued').
	fifoIndex, wsIndex string
	// due is the back-off part of the rule, on the clock now.
	due func(now string) string
	// k1, k2 are the FIFO order: oldest first.
	k1, k2 string
	// since is when a job became claimable (the queue gauges' age).
	since string
	// set is the claim's SET clause (named args @worker, @lease).
	set       func(d dialect) string
	returning string
	// extra are computed columns read with a claimed job (", expr AS name").
	extra string
}

// notPausedSQL holds when no pause covers the job j (ade_worker_pauses:
// everything, its workspace or its configuration).
const notPausedSQL = `NOT EXISTS (SELECT 1 FROM ade_worker_pauses p WHERE p.scope = 'all'
		OR (p.scope = 'workspace' AND p.target = j.workspace_id)
		OR (p.scope = 'configuration' AND p.target = j.configuration_id))`

var runQueue = queueKind{
	kind: KindRun, table: "runs", active: StatusRunning,
	from:      `runs j LEFT JOIN builds b ON b.id = j.build_id`,
	fifoIndex: "ix_runs_queued_claim", wsIndex: "ix_runs_queued_workspace",
	due: func(now string) string { return `j.available_at <= ` + now },
	k1:  "j.available_at", k2: "j.created_at", since: "j.available_at",
	set: func(d dialect) string {
		return `status = 'running', claimed_by = @worker, claim_expires_at = ` + d.laterSQL("@lease") +
			`, started_at = ` + d.nowSQL() + `, attempt_count = runs.attempt_count + 1, error_message = NULL`
	},
	returning: runClaimColumns,
	extra:     ", " + runBuildReadyColumn,
}

var buildQueue = queueKind{
	kind: KindBuild, table: "builds", active: StatusBuilding,
	from:      `builds j`,
	fifoIndex: "ix_builds_queued_claim", wsIndex: "ix_builds_queued_workspace",
	// The ADE API inserts builds without available_at: due at once.
	due: func(now string) string { return `(j.available_at IS NULL OR j.available_at <= ` + now + `)` },
	k1:  "j.created_at", k2: "j.id", since: "COALESCE(j.available_at, j.created_at)",
	set: func(d dialect) string {
		return `status = 'building', claimed_by = @worker, claim_expires_at = ` + d.laterSQL("@lease") +
			`, started_at = ` + d.nowSQL() + `, attempt_count = builds.attempt_count + 1, error_message = NULL`
	},
	returning: buildClaimColumns,
}

// fromUsing is from with j read through the index where the dialect
// needs telling (SQLite without ANALYZE statistics prefers the plain
// status index and sorts every queued row).
func (q queueKind) fromUsing(d dialect, index string) string {
	return strings.Replace(q.from, " j", " j"+d.indexedBy(index), 1)
}

// claimable is THE rule, as a condition on j (and b for runs): queued, due
// on the database's clock now, attempts left, for a run a build that is
// absent or ready, and no pause covering it. The per-workspace cap is not
// part of it: it depends on the other jobs (see cappedSQL).
func (q queueKind) claimable(now string) string {
	c := `j.status = 'queued' AND ` + q.due(now) + ` AND j.attempt_count < j.max_attempts`
	if q.kind == KindRun {
		c += ` AND (j.build_id IS NULL OR b.status = 'ready')`
	}
	return c + ` AND ` + notPausedSQL
}

// busySQL is the jobs running now per workspace across the fleet.
func (q queueKind) busySQL() string {
	return `SELECT workspace_id, COUNT(*) AS n FROM ` + q.table + ` WHERE status = '` + string(q.active) + `' GROUP BY workspace_id`
}

// capOf is the cap that applies to q's jobs: runs only.
func (q queueKind) capOf(p ClaimPolicy) int {
	if q.kind != KindRun {
		return 0
	}
	return p.WorkspaceMaxRunning
}

// countSQL counts the jobs a claim could take now: the claimable ones,
// and with a cap at most cap minus the running ones per workspace.
func (q queueKind) countSQL(now string, limit int) string {
	if limit <= 0 {
		return `SELECT COUNT(*) FROM ` + q.from + ` WHERE ` + q.claimable(now)
	}
	c := fmt.Sprint(limit)
	return `SELECT COALESCE(SUM(CASE WHEN c.n < ` + c + ` - COALESCE(w.n, 0) THEN c.n
		WHEN COALESCE(w.n, 0) >= ` + c + ` THEN 0 ELSE ` + c + ` - COALESCE(w.n, 0) END), 0)
	FROM (SELECT j.workspace_id, COUNT(*) AS n FROM ` + q.from + ` WHERE ` + q.claimable(now) + ` GROUP BY j.workspace_id) c
	LEFT JOIN (` + q.busySQL() + `) w ON w.workspace_id = c.workspace_id`
}

// fifoClaimSQL takes up to @limit claimable jobs, oldest first, in one
// statement: the order without a cap, and the fastest claim.
func (q queueKind) fifoClaimSQL(d dialect) string {
	pick := `SELECT j.id FROM ` + q.fromUsing(d, q.fifoIndex) + ` WHERE ` + q.claimable(d.nowSQL()) + ` ORDER BY ` + q.k1 + `, ` + q.k2 + ` LIMIT @limit`
	return d.claimSQL(q, "", pick)
}

// idleCandidates is how many jobs of idle workspaces a fair pick looks at:
// more than one, so a pick that skips a row another claim holds (SKIP
// LOCKED) still finds an idle workspace's job.
const idleCandidates = 4

// pickOneSQL takes the one job the policy wants next, or none. Candidates
// are the oldest claimable jobs of workspaces with nothing running, and the
// oldest claimable job of each workspace that has jobs running (under the
// cap); the few workspaces with running jobs are each one index probe, so
// the cost follows the fleet's concurrency, not the queue's depth. Run once
// per job a claim takes: each pick sees the ones before it running.
func (q queueKind) pickOneSQL(d dialect, p ClaimPolicy) string {
	now := d.nowSQL()
	under := ""
	if n := q.capOf(p); n > 0 {
		under = fmt.Sprintf(" WHERE busy.n < %d", n)
	}
	order := "cand.n, cand.k1, cand.k2"
	if p.FIFO {
		order = "cand.k1, cand.k2"
	}
	with := `busy AS (` + q.busySQL() + `),
cand AS (
	SELECT * FROM (SELECT j.id, 0 AS n, ` + q.k1 + ` AS k1, ` + q.k2 + ` AS k2 FROM ` + q.fromUsing(d, q.fifoIndex) + `
		WHERE ` + q.claimable(now) + ` AND j.workspace_id NOT IN (SELECT workspace_id FROM busy)
		ORDER BY ` + q.k1 + `, ` + q.k2 + ` LIMIT ` + fmt.Sprint(idleCandidates) + `) AS idle
	UNION ALL
	SELECT c.id, busy.n, ` + strings.ReplaceAll(q.k1, "j.", "c.") + `, ` + strings.ReplaceAll(q.k2, "j.", "c.") + `
	FROM busy JOIN ` + q.table + ` c ON c.id = (SELECT j.id FROM ` + q.fromUsing(d, q.wsIndex) + `
		WHERE j.workspace_id = busy.workspace_id AND ` + q.claimable(now) + `
		ORDER BY ` + q.k1 + `, ` + q.k2 + ` LIMIT 1)` + under + `)`
	pick := `SELECT cand.id FROM cand ORDER BY ` + order + ` LIMIT 1`
	if d.name() == "postgres" {
		// FOR UPDATE needs the table's row; SQLite must not join it (3.45
		// then scans every queued row to probe cand).
		pick = `SELECT j.id FROM ` + q.table + ` j JOIN cand ON cand.id = j.id WHERE j.status = 'queued'
	ORDER BY ` + order + ` LIMIT 1`
	}
	return d.claimSQL(q, with, pick)
}

// DemandSQL is the KEDA query (PostgreSQL): the jobs the fleet could claim
// now plus the ones running. KEDA divides it by the jobs one pod runs at
// once (targetQueryValue, copied from ADE_WORKER_CONCURRENCY). Paused work
// is no demand; with a cap (0: none), a workspace's runs over it are none
// either. deploy/kubernetes/scaledobject.yaml holds DemandSQL(0); a test
// checks that it does.
func DemandSQL(workspaceMaxRunning int) string {
	d := postgresDialect{}
	return `SELECT (` + runQueue.countSQL(d.nowSQL(), workspaceMaxRunning) + `)
	+ (` + buildQueue.countSQL(d.nowSQL(), 0) + `)
	+ (SELECT count(*) FROM runs WHERE status = 'running')
	+ (SELECT count(*) FROM builds WHERE status = 'building')`
}

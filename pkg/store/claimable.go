package store

import (
	"fmt"
	"slices"
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
func (s *Store) SetClaimPolicy(p ClaimPolicy) {
	s.policy = p
	s.claimSQL.Clear()
}

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

// fairWindow is how many of the oldest claimable jobs a claim of limit
// jobs reads: enough for limit distinct idle workspaces in a mixed queue,
// with room for rows another claim holds.
func fairWindow(limit int) int { return 2*limit + 4 }

// keyColumns are the columns of the order keys k1, k2 on alias, each once.
func (q queueKind) keyColumns(alias string) string {
	cols := []string{"j.id"}
	for _, k := range []string{q.k1, q.k2} {
		if !slices.Contains(cols, k) {
			cols = append(cols, k)
		}
	}
	return strings.ReplaceAll(strings.Join(cols, ", "), "j.", alias+".")
}

// candidatesSQL reads what a fair or capped claim of up to limit jobs
// chooses among, oldest first: each job's id, workspace, the jobs its
// workspace runs now (n) and whether it is one of a workspace's heads
// (head = 1) or of the window (0). Either
//   - the window: the window oldest claimable jobs (one read along the
//     claim index). For each workspace in it, they are its oldest jobs. Or,
//     with everyWorkspace (when the window cannot decide, see planClaim),
//   - the heads: the limit oldest claimable jobs of each workspace with
//     jobs running, below the cap, and of each other workspace with queued
//     jobs (found by skipping through the workspace index): one index probe
//     per workspace.
//
// Nothing is locked here: planClaim orders the candidates and takeSQL
// takes them.
//
// The numbers are written in, not bound: a statement without parameters is
// planned once per connection, while planning the heads' read at every
// claim cost PostgreSQL three times what running it did.
func (q queueKind) candidatesSQL(d dialect, p ClaimPolicy, everyWorkspace bool, limit, window int) string {
	now := d.nowSQL()
	headCap := ""
	if n := q.capOf(p); n > 0 {
		headCap = fmt.Sprintf(" WHERE busy.n < %d", n)
	}
	ck1, ck2 := strings.ReplaceAll(q.k1, "j.", "c."), strings.ReplaceAll(q.k2, "j.", "c.")
	head := func(ws string) func(cols string) string {
		return func(cols string) string {
			return `SELECT ` + cols + ` FROM ` + q.fromUsing(d, q.wsIndex) + `
		WHERE j.workspace_id = ` + ws + ` AND ` + q.claimable(now) + `
		ORDER BY ` + q.k1 + `, ` + q.k2 + ` LIMIT ` + fmt.Sprint(limit)
		}
	}
	heads := `SELECT c.id, busy.workspace_id, busy.n, 1 AS head, ` + ck1 + ` AS k1, ` + ck2 + ` AS k2
	FROM ` + d.eachRowSQL(q, "busy", head("busy.workspace_id")) + headCap
	if !everyWorkspace {
		return q.windowSQL(d, fmt.Sprint(window), "")
	}
	// Each workspace with queued jobs, in workspace order: the smallest
	// workspace_id after the one before, read from the index's first column.
	next := func(after string) string {
		return `SELECT MIN(workspace_id) FROM ` + q.table + d.indexedBy(q.wsIndex) + ` WHERE status = 'queued'` + after
	}
	return `WITH RECURSIVE busy AS (` + q.busySQL() + `),
queued(ws) AS (` + next("") + `
	UNION ALL
	SELECT (` + next(" AND workspace_id > queued.ws") + `) FROM queued WHERE queued.ws IS NOT NULL)
SELECT id, workspace_id, n, head FROM (
	SELECT c.id, queued.ws AS workspace_id, 0 AS n, 1 AS head, ` + ck1 + ` AS k1, ` + ck2 + ` AS k2
	FROM ` + d.eachRowSQL(q, "queued", head("queued.ws")) + `
	WHERE queued.ws NOT IN (SELECT workspace_id FROM busy)
	UNION ALL
	` + heads + `) AS cand
ORDER BY k1, k2`
}

// windowSQL is candidatesSQL's window of size jobs. With a tag, each row
// also carries the tag (queue) and its place in the window (pos), for
// windowsSQL; pos is numbered outside the LIMIT, over the window's rows
// only (inside, PostgreSQL numbered the whole queue first: six times the
// cost).
func (q queueKind) windowSQL(d dialect, size, tag string) string {
	keys := ""
	if tag != "" {
		keys = `, ` + q.k1 + ` AS k1, ` + q.k2 + ` AS k2`
	}
	w := `WITH busy AS (` + q.busySQL() + `)
SELECT j.id, j.workspace_id, COALESCE(busy.n, 0) AS n, 0 AS head` + keys + `
FROM ` + q.fromUsing(d, q.fifoIndex) + ` LEFT JOIN busy ON busy.workspace_id = j.workspace_id
WHERE ` + q.claimable(d.nowSQL()) + `
ORDER BY ` + q.k1 + `, ` + q.k2 + ` LIMIT ` + size
	if tag == "" {
		return w
	}
	return `SELECT id, workspace_id, n, head, '` + tag + `' AS queue, row_number() OVER (ORDER BY k1, k2) AS pos
FROM (` + w + `) AS w`
}

// windowsSQL reads the builds' window (of bsize jobs) and the runs' (of
// rsize) in one statement, a round trip where a claim takes both. The
// sizes are written in, not bound: a statement without parameters is
// planned once per connection, and planning this one at every bind cost
// the server more than running it.
func windowsSQL(d dialect, bsize, rsize int) string {
	return buildQueue.windowSQL(d, fmt.Sprint(bsize), "b") + `
UNION ALL
` + runQueue.windowSQL(d, fmt.Sprint(rsize), "r") + `
ORDER BY queue, pos`
}

// windowRow is a row of windowsSQL (flat: gorm skips an embedded
// unexported struct).
type windowRow struct {
	ID          string
	WorkspaceID string
	N           int
	Head        int
	Queue       string
}

// candidate is a row of candidatesSQL.
type candidate struct {
	ID          string
	WorkspaceID string
	N           int
	Head        int
}

// planClaim orders cands (oldest first, as candidatesSQL returns them, from
// a window of window rows) in the policy's order, leaving out what the cap
// excludes: a claim takes the first ones of the list it can lock. It says
// when the list cannot be made from cands: then candidatesSQL with
// everyWorkspace makes it.
//
// A job's level is the jobs its workspace runs now plus its workspace's
// jobs ahead of it in the queue. Taking jobs one at a time, fewest running
// first, ties to the oldest claimable job, takes them in order of (level,
// age); fifo order is age alone. The cap admits a job while its level is
// below the cap, so a workspace has at most cap minus running in the list.
// When the window is full, a workspace with nothing running beyond it may
// have a job of level 0, younger than the window's youngest: the list ends
// before such a job would come (after level 0 in fair order, after the
// window's youngest in fifo order), and when that leaves fewer than limit
// jobs, the list needs every workspace's heads (a flood of a busy
// workspace ahead of everything else, or a queue of one workspace, is
// such a case).
func planClaim(cands []candidate, p ClaimPolicy, capN, window, limit int) (ids []string, needEvery bool) {
	scanned, lastScanned := 0, -1
	for i, c := range cands {
		if c.Head == 0 {
			scanned, lastScanned = scanned+1, i
		}
	}
	complete := scanned < window
	type choice struct {
		id    string
		level int
	}
	var ok []choice
	ahead := map[string]int{}
	for i, c := range cands {
		level := c.N + ahead[c.WorkspaceID]
		ahead[c.WorkspaceID]++
		switch {
		case capN > 0 && level >= capN:
		case !complete && !p.FIFO && level > 0, !complete && p.FIFO && i > lastScanned:
		default:
			ok = append(ok, choice{c.ID, level})
		}
	}
	if !complete && len(ok) < limit {
		return nil, true
	}
	if !p.FIFO {
		slices.SortStableFunc(ok, func(a, b choice) int { return a.level - b.level })
	}
	for _, c := range ok {
		ids = append(ids, c.id)
	}
	return ids, false
}

// takeSQL claims the first @limit jobs of the JSON array of ids @ids that
// are still queued, in the array's order. On PostgreSQL a job another
// claim holds is passed over for the next (SKIP LOCKED): claims at the same
// instant read the same candidates. (CROSS JOIN keeps SQLite reading the
// list first, each job then by its primary key.)
func (q queueKind) takeSQL(d dialect) string {
	return d.claimSQL(q, "", `SELECT j.id FROM `+d.listSQL("@ids")+` CROSS JOIN `+q.table+` j
	WHERE j.id = l.id AND j.status = 'queued' ORDER BY l.pos LIMIT @limit`)
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

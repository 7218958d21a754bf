package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// Kind is the table a job lives in: the job spec's kind.
type Kind = jobspec.Kind

// Job kinds.
const (
	KindBuild = jobspec.KindBuild
	KindRun   = jobspec.KindRun
)

// Fence identifies one claim of one job. Every write about a claimed job is
// conditioned on it, so a worker that lost its lease cannot overwrite the
// work of the worker that holds the job now.
type Fence struct {
	Kind    Kind
	ID      string
	Worker  string
	Attempt int
}

func (f Fence) table() string {
	if f.Kind == KindBuild {
		return "builds"
	}
	return "runs"
}

func (f Fence) activeStatus() Status { return ActiveStatus(f.Kind) }

// where is the fencing condition, with its arguments.
func (f Fence) where() (string, []any) {
	return "id = ? AND status = ? AND claimed_by = ? AND attempt_count = ?",
		[]any{f.ID, f.activeStatus(), f.Worker, f.Attempt}
}

// ClaimedRun is a run this worker now holds.
type ClaimedRun struct {
	ID              string
	WorkspaceID     string
	ConfigurationID string
	BuildID         sql.NullString
	InputDocumentID string
	RunOptions      sql.NullString
	InputSheetNames sql.NullString
	AttemptCount    int
	MaxAttempts     int
	AvailableAt     Time
	CreatedAt       Time
	// BuildReadyAt is when the run's build finished (NULL without a build):
	// a run queued before its build was ready became claimable only then.
	BuildReadyAt Time
	// Loaded is the run's configuration, document and build when the
	// claim read them in its own statement (PostgreSQL: a round trip
	// fewer); nil when LoadRunContext must.
	Loaded *RunContext `gorm:"-"`
}

// claimedRunRow is a claimed run as a claim statement returns it: with
// the run's context where the dialect reads it there (context_read).
type claimedRunRow struct {
	ClaimedRun
	Context     runContextRow `gorm:"embedded"`
	ContextRead bool          `gorm:"column:context_read"`
}

func (r *claimedRunRow) run() ClaimedRun {
	c := r.ClaimedRun
	if r.ContextRead {
		c.Loaded = r.Context.context()
	}
	return c
}

// ClaimedBuild is a build this worker now holds.
type ClaimedBuild struct {
	ID              string
	WorkspaceID     string
	ConfigurationID string
	Fingerprint     string
	EngineSpec      sql.NullString
	AttemptCount    int
	MaxAttempts     int
	AvailableAt     Time
	CreatedAt       Time
}

const runClaimColumns = `id, workspace_id, configuration_id, build_id, input_document_id, run_options,
	input_sheet_names, attempt_count, max_attempts, available_at, created_at`

// runBuildReadyColumn is read with a claimed run: a subquery, which
// qualify must not prefix.
const runBuildReadyColumn = `(SELECT b.finished_at FROM builds b WHERE b.id = runs.build_id) AS build_ready_at`

const buildClaimColumns = `id, workspace_id, configuration_id, fingerprint, engine_spec, attempt_count,
	max_attempts, available_at, created_at`

// qualify prefixes each column of a list with its table (PostgreSQL's
// UPDATE ... FROM would otherwise find them ambiguous).
func qualify(table, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = table + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

func claimArgs(worker string, lease time.Duration, limit int) map[string]any {
	return map[string]any{"worker": worker, "lease": lease.Seconds(), "limit": limit}
}

// ClaimJobs takes up to buildLimit claimable builds, then as many
// claimable runs as the builds left room for within runLimit, in the order
// and under the cap of the store's ClaimPolicy. Claimability and the
// lease's end use the database's clock.
//
// Where claims need a transaction (SQLite, whose BEGIN IMMEDIATE makes
// them one at a time; a cap, whose lock must be held from the counts to
// the take) it is one, for builds and runs together, so rows that cannot
// be read back are not left claimed. On PostgreSQL without a cap each
// statement is its own transaction (see claimEach): ClaimJobs may then
// return the jobs it took together with the error that stopped it, and
// the caller must run them.
func (s *Store) ClaimJobs(ctx context.Context, worker string, lease time.Duration,
	buildLimit, runLimit int) (builds []ClaimedBuild, runs []ClaimedRun, err error) {
	capped := s.policy.WorkspaceMaxRunning > 0 && runLimit > 0
	// A dialect without a claim lock serialises claims by their
	// transaction (SQLite); one with it needs a transaction for the lock.
	if s.dialect.claimLockSQL() != "" && !capped {
		return s.claimEach(ctx, worker, lease, buildLimit, runLimit)
	}
	// Retried on a deadlock: a migration running at the same time (a
	// rolling deploy's init container) locks runs, builds and the
	// supervisors' rows in its own order.
	free, wrote := 0, false
	err = s.txRetried(ctx, func(tx *gorm.DB) error {
		builds, runs, wrote = nil, nil, false
		if lock := s.dialect.claimLockSQL(); lock != "" && capped {
			if err := tx.Exec(lock).Error; err != nil {
				return fmt.Errorf("take the claim lock: %w", err)
			}
		}
		if buildLimit > 0 {
			if err := s.claimFrom(tx, buildQueue, worker, lease, buildLimit, &builds, nil); err != nil {
				return fmt.Errorf("claim builds: %w", err)
			}
		}
		if left := runLimit - len(builds); left > 0 {
			if err := s.claimFrom(tx, runQueue, worker, lease, left, &runs, nil); err != nil {
				return fmt.Errorf("claim runs: %w", err)
			}
		}
		free = runLimit - len(builds) - len(runs)
		var err error
		wrote, err = s.advertiseFree(tx, worker, free)
		return err
	})
	s.advertised.ended(worker, free, wrote, err)
	if err != nil {
		return nil, nil, err
	}
	return builds, runs, nil
}

// claimEach is ClaimJobs without a transaction, for PostgreSQL without a
// cap: the BEGIN and COMMIT were two of a claim's five round trips, and
// under READ COMMITTED they made it no safer. Each statement reads afresh
// either way, and the take itself checks that a job is still queued and
// skips the rows another claim has locked, so no job is taken twice. When
// both queues are read in fair order, their windows come in one statement
// (windowsSQL). The cost: should a taken row fail to scan, it stays
// claimed until its lease expires and is then retried.
func (s *Store) claimEach(ctx context.Context, worker string, lease time.Duration,
	buildLimit, runLimit int) (builds []ClaimedBuild, runs []ClaimedRun, err error) {
	db := s.db.WithContext(ctx)
	var bw, rw *window
	if buildLimit > 0 && runLimit > 0 && !s.policy.FIFO && !s.everyFirst[0].Load() && !s.everyFirst[1].Load() {
		err = s.retried(ctx, func(int) (err error) { bw, rw, err = s.readWindows(db, buildLimit, runLimit); return err })
		if err != nil {
			return nil, nil, fmt.Errorf("claim: %w", err)
		}
	}
	if buildLimit > 0 {
		err = s.retried(ctx, func(try int) error {
			builds = builds[:0]
			return s.claimFrom(db, buildQueue, worker, lease, buildLimit, &builds, firstTry(try, bw))
		})
		if err != nil {
			return nil, nil, fmt.Errorf("claim builds: %w", err)
		}
	}
	if left := runLimit - len(builds); left > 0 {
		err = s.retried(ctx, func(try int) error {
			runs = runs[:0]
			return s.claimFrom(db, runQueue, worker, lease, left, &runs, firstTry(try, rw))
		})
		if err != nil {
			return builds, nil, fmt.Errorf("claim runs: %w", err)
		}
	}
	free := runLimit - len(builds) - len(runs)
	wrote, err := s.advertiseFree(db, worker, free)
	s.advertised.ended(worker, free, wrote, err)
	return builds, runs, err
}

// window is a queue's candidates read ahead of its claim (windowsSQL),
// from a window of size jobs.
type window struct {
	cands []candidate
	size  int
}

// firstTry is w on the first try only: a retried claim reads afresh.
func firstTry(try int, w *window) *window {
	if try > 0 {
		return nil
	}
	return w
}

// readWindows reads the builds' and the runs' windows in one statement.
func (s *Store) readWindows(db *gorm.DB, buildLimit, runLimit int) (*window, *window, error) {
	bw, rw := &window{size: fairWindow(buildLimit)}, &window{size: fairWindow(runLimit)}
	var rows []windowRow
	if err := db.Raw(s.claimStatement(claimSQLKey{stmt: stmtWindows, limit: bw.size, window: rw.size},
		func() string { return windowsSQL(s.dialect, bw.size, rw.size) })).Scan(&rows).Error; err != nil {
		return nil, nil, err
	}
	for _, r := range rows {
		c := candidate{ID: r.ID, WorkspaceID: r.WorkspaceID, N: r.N, Head: r.Head}
		if r.Queue == "b" {
			bw.cands = append(bw.cands, c)
		} else {
			rw.cands = append(rw.cands, c)
		}
	}
	return bw, rw, nil
}

// claimFrom claims up to limit jobs of q into out (a *[]ClaimedRun or
// *[]ClaimedBuild). FIFO without a cap is the plain oldest-first
// statement; otherwise two: read the candidates (candidatesSQL, unless
// they were read ahead: first), order them in Go (planClaim), take the
// first ones still free (takeSQL); and a read of every workspace's
// candidates between them when the first read cannot decide.
func (s *Store) claimFrom(tx *gorm.DB, q queueKind, worker string, lease time.Duration, limit int, out any, first *window) error {
	p := s.policy
	args := claimArgs(worker, lease, limit)
	if p.FIFO && q.capOf(p) == 0 {
		_, err := appendScan(tx.Raw(s.claimStatement(claimSQLKey{kind: q.kind, stmt: stmtFIFO}, func() string { return q.fifoClaimSQL(s.dialect) }), args), out, nil)
		return err
	}
	// While a busy workspace's flood lasts, every claim needs every
	// workspace's heads: with few workspaces queued, read those at once.
	everyFirst := &s.everyFirst[0]
	if q.kind == KindRun {
		everyFirst = &s.everyFirst[1]
	}
	var (
		cands     []candidate
		ids       []string
		needEvery = everyFirst.Load()
	)
	if !needEvery {
		w := first
		if w == nil {
			w = &window{size: fairWindow(limit)}
			if err := tx.Raw(s.claimStatement(claimSQLKey{kind: q.kind, stmt: stmtWindow, limit: limit, window: w.size},
				func() string { return q.candidatesSQL(s.dialect, p, false, limit, w.size) })).Scan(&w.cands).Error; err != nil {
				return err
			}
		}
		ids, needEvery = planClaim(w.cands, p, q.capOf(p), w.size, limit)
	}
	if needEvery {
		cands = nil
		if err := tx.Raw(s.claimStatement(claimSQLKey{kind: q.kind, stmt: stmtEvery, limit: limit},
			func() string { return q.candidatesSQL(s.dialect, p, true, limit, 0) })).Scan(&cands).Error; err != nil {
			return err
		}
		ids, _ = planClaim(cands, p, q.capOf(p), len(cands)+1, limit)
		everyFirst.Store(workspaces(cands) <= everyFirstMax)
	}
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	args["ids"] = string(list)
	_, err = appendScan(tx.Raw(s.claimStatement(claimSQLKey{kind: q.kind, stmt: stmtTake}, func() string { return q.takeSQL(s.dialect) }), args), out, ids)
	return err
}

// claimSQLKey names one of the claim's statements. They depend on the
// store's dialect and policy, fixed while claims run, and on these: made
// once each, not at every claim (a few kilobytes of text each).
type claimSQLKey struct {
	kind          Kind
	stmt          byte
	limit, window int
}

// The claim's statements.
const (
	stmtFIFO byte = iota
	stmtWindow
	stmtEvery
	stmtTake
	stmtWindows
)

// claimStatement is the statement k, made by build the first time.
func (s *Store) claimStatement(k claimSQLKey, build func() string) string {
	if q, ok := s.claimSQL.Load(k); ok {
		return q.(string)
	}
	q, _ := s.claimSQL.LoadOrStore(k, build())
	return q.(string)
}

// everyFirstMax is the most workspaces with queued jobs for which a claim
// reads every workspace's heads first (see claimFrom): as cheap as the
// window then.
const everyFirstMax = 16

// workspaces counts the workspaces of cands.
func workspaces(cands []candidate) int {
	seen := map[string]bool{}
	for _, c := range cands {
		seen[c.WorkspaceID] = true
	}
	return len(seen)
}

// appendScan appends the rows q returns to out (a pointer to a slice) in
// the order of ids (as returned without ids), and says how many it
// appended.
func appendScan(q *gorm.DB, out any, ids []string) (int, error) {
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	switch o := out.(type) {
	case *[]ClaimedRun:
		var got []claimedRunRow
		err := q.Scan(&got).Error
		slices.SortStableFunc(got, func(a, b claimedRunRow) int { return pos[a.ID] - pos[b.ID] })
		for i := range got {
			*o = append(*o, got[i].run())
		}
		return len(got), err
	case *[]ClaimedBuild:
		var got []ClaimedBuild
		err := q.Scan(&got).Error
		slices.SortStableFunc(got, func(a, b ClaimedBuild) int { return pos[a.ID] - pos[b.ID] })
		*o = append(*o, got...)
		return len(got), err
	}
	return 0, fmt.Errorf("appendScan: unexpected %T", out)
}

// fencedUpdate applies set (a SQL SET clause and its args) to the fenced job
// inside tx, and fails with ErrLeaseLost when the fence no longer holds.
func (s *Store) fencedUpdate(tx *gorm.DB, f Fence, set string, setArgs ...any) error {
	where, args := f.where()
	res := tx.Exec("UPDATE "+f.table()+" SET "+set+" WHERE "+where, append(setArgs, args...)...)
	if res.Error != nil {
		return fmt.Errorf("update %s %s: %w", f.Kind, f.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Requeue puts a held job back in the queue for another attempt, available
// again after delay (from the database's now); the attempt counts. A
// shutdown's hand-back is HandBack.
func (s *Store) Requeue(ctx context.Context, f Fence, delay time.Duration, message string) error {
	set := requeueSet(s.dialect)
	return s.tx(ctx, func(tx *gorm.DB) error {
		return s.fencedUpdate(tx, f, set, delay.Seconds(), nullIfEmpty(message))
	})
}

// requeueSet puts a held job back in the queue, available after the first
// argument's seconds, with the second as its error.
func requeueSet(d dialect) string {
	return "status = 'queued', available_at = " + d.laterSQL("?") + ", error_message = ?, claimed_by = NULL, claim_expires_at = NULL"
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

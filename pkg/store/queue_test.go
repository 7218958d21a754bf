package store_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

func TestClaimRunsClaimability(t *testing.T) {
	t.Parallel()
	// Most cases are a run queued an hour ago and available a minute ago,
	// then changed by one SET clause, or queued behind a build.
	queued := func(set string) func(t *testing.T, e *env) string {
		return func(t *testing.T, e *env) string {
			id := e.run(t, "", t0.Add(-time.Hour), t0.Add(-time.Minute))
			if set != "" {
				e.exec(t, `UPDATE runs SET `+set+` WHERE id = ?`, id)
			}
			return id
		}
	}
	behindBuild := func(status string) func(t *testing.T, e *env) string {
		return func(t *testing.T, e *env) string {
			return e.run(t, e.build(t, status), t0.Add(-time.Hour), t0.Add(-time.Minute))
		}
	}
	cases := []struct {
		name      string
		setup     func(t *testing.T, e *env) string // returns the run id
		claimable bool
	}{
		{"queued, past, no build", queued(""), true},
		{"available just now", func(t *testing.T, e *env) string { return e.run(t, "", t0.Add(-time.Hour), time.Now()) }, true},
		{"ready build", behindBuild("ready"), true},
		{"last attempt left", queued("attempt_count = 2, max_attempts = 3"), true},
		{"available in the future", func(t *testing.T, e *env) string {
			return e.run(t, "", t0.Add(-time.Hour), time.Now().Add(time.Minute))
		}, false},
		{"attempts used up", queued("attempt_count = 3, max_attempts = 3"), false},
		{"build queued", behindBuild("queued"), false},
		{"build building", behindBuild("building"), false},
		{"build failed", behindBuild("failed"), false},
		{"build cancelled", behindBuild("cancelled"), false},
		{"build row missing", func(t *testing.T, e *env) string {
			return e.run(t, store.NewID(), t0.Add(-time.Hour), t0.Add(-time.Minute))
		}, false},
		{"already running", func(t *testing.T, e *env) string {
			id := queued("")(t, e)
			e.hold(t, store.KindRun, id, "other", 1, 3, ptr(t0.Add(time.Hour)))
			return id
		}, false},
		{"succeeded", queued("status = 'succeeded'"), false},
		{"cancelled", queued("status = 'cancelled'"), false},
	}
	eachEnv(t, func(t *testing.T, e *env) {
		ids := make([]string, len(cases))
		before := make([]jobRow, len(cases))
		for i, tc := range cases {
			ids[i] = tc.setup(t, e)
			e.exec(t, `UPDATE runs SET error_message = 'from before' WHERE id = ?`, ids[i])
			before[i] = e.runRow(t, ids[i])
		}
		claimed, err := e.s.ClaimRuns(context.Background(), "w1", 10*time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]store.ClaimedRun{}
		for _, c := range claimed {
			got[c.ID] = c
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c, ok := got[ids[i]]
				if ok != tc.claimable {
					t.Fatalf("claimed = %v, want %v", ok, tc.claimable)
				}
				r := e.runRow(t, ids[i])
				if !tc.claimable {
					if r != before[i] {
						t.Errorf("unclaimable run changed:\nbefore %+v\nafter  %+v", before[i], r)
					}
					return
				}
				if c.AttemptCount != before[i].AttemptCount+1 || r.AttemptCount != c.AttemptCount {
					t.Errorf("attempt: claim %d, row %d, before %d", c.AttemptCount, r.AttemptCount, before[i].AttemptCount)
				}
				if r.Status != "running" || r.ClaimedBy.String != "w1" || r.ErrorMessage.Valid {
					t.Errorf("claimed row: %+v", r)
				}
				nearNow(t, "claim_expires_at", r.ClaimExpiresAt, 10*time.Minute)
				nearNow(t, "started_at", r.StartedAt, 0)
				if c.WorkspaceID != e.ws || c.ConfigurationID != e.cfg || c.MaxAttempts != 3 || !c.CreatedAt.Valid || !c.AvailableAt.Valid {
					t.Errorf("claim: %+v", c)
				}
			})
		}
	})
}

func TestClaimRunsOrderAndLimit(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// Inserted out of order: claims go by available_at, then created_at.
		c := e.run(t, "", t0.Add(-10*time.Minute), t0.Add(-1*time.Minute))
		b := e.run(t, "", t0.Add(-5*time.Minute), t0.Add(-2*time.Minute))
		a := e.run(t, "", t0.Add(-6*time.Minute), t0.Add(-2*time.Minute))
		d := e.run(t, "", t0.Add(-20*time.Minute), t0.Add(-1*time.Minute+time.Microsecond))
		cases := []struct {
			limit int
			want  []string
		}{
			{2, []string{a, b}},
			{1, []string{c}},
			{5, []string{d}},
			{5, nil},
		}
		for i, tc := range cases {
			claimed, err := e.s.ClaimRuns(ctx, fmt.Sprint("w", i), time.Minute, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range claimed {
				got = append(got, r.ID)
			}
			// RETURNING does not promise an order: compare as sets, in
			// the claim order of the table.
			sortLike(got, []string{a, b, c, d})
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("claim %d (limit %d) = %v, want %v", i, tc.limit, got, tc.want)
			}
		}
	})
}

func sortLike(ids, order []string) {
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	sort.Slice(ids, func(i, j int) bool { return pos[ids[i]] < pos[ids[j]] })
}

func TestClaimJobsConcurrently(t *testing.T) {
	t.Parallel()
	const (
		runs    = 200
		builds  = 40
		workers = 8
		limit   = 5
	)
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for i := 0; i < runs; i++ {
			e.run(t, "", t0.Add(-time.Hour), t0.Add(-time.Duration(i%7)*time.Second))
		}
		for i := 0; i < builds; i++ {
			e.build(t, "queued")
		}
		handles := make([]*store.Store, workers)
		for i := range handles {
			handles[i] = pgtemp.Open(t, e.url) // its own connections
		}
		claims := make([][]string, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for {
					// Builds and runs in one claim: both queues' windows
					// in one read (windowsSQL), then each take.
					gotBuilds, got, err := handles[w].ClaimJobs(ctx, fmt.Sprint("worker-", w), time.Minute, limit, limit)
					if err != nil {
						errs[w] = err
						return
					}
					if len(gotBuilds)+len(got) > limit {
						errs[w] = fmt.Errorf("claimed %d builds and %d runs with limit %d", len(gotBuilds), len(got), limit)
						return
					}
					if len(gotBuilds)+len(got) == 0 {
						return
					}
					for _, b := range gotBuilds {
						claims[w] = append(claims[w], b.ID)
					}
					for _, r := range got {
						claims[w] = append(claims[w], r.ID)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		owner := map[string]int{}
		for w, ids := range claims {
			if errs[w] != nil {
				t.Fatalf("worker %d: %v", w, errs[w])
			}
			for _, id := range ids {
				if prev, dup := owner[id]; dup {
					t.Errorf("job %s claimed by worker %d and worker %d", id, prev, w)
				}
				owner[id] = w
			}
		}
		if len(owner) != runs+builds {
			t.Errorf("%d distinct jobs claimed, want %d", len(owner), runs+builds)
		}
		var rows []struct {
			Status       string
			AttemptCount int
			N            int
		}
		e.scan(t, &rows, `SELECT status, attempt_count, COUNT(*) AS n FROM runs GROUP BY status, attempt_count`)
		if len(rows) != 1 || rows[0].Status != "running" || rows[0].AttemptCount != 1 || rows[0].N != runs {
			t.Errorf("runs after the claims: %+v", rows)
		}
		e.scan(t, &rows, `SELECT status, attempt_count, COUNT(*) AS n FROM builds GROUP BY status, attempt_count`)
		if len(rows) != 1 || rows[0].Status != "building" || rows[0].AttemptCount != 1 || rows[0].N != builds {
			t.Errorf("builds after the claims: %+v", rows)
		}
		for w, ids := range claims {
			var n int
			e.scan(t, &n, `SELECT (SELECT COUNT(*) FROM runs WHERE claimed_by = @w) + (SELECT COUNT(*) FROM builds WHERE claimed_by = @w)`,
				map[string]any{"w": fmt.Sprint("worker-", w)})
			if n != len(ids) {
				t.Errorf("worker %d: claimed_by on %d rows, claims returned %d", w, n, len(ids))
			}
		}
	})
}

func TestClaimBuilds(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old := e.buildAt(t, "queued", t0.Add(-2*time.Hour))
		newer := e.build(t, "queued")
		future := e.build(t, "queued")
		e.exec(t, `UPDATE builds SET available_at = ? WHERE id = ?`, e.ts(time.Now().Add(time.Minute)), future)
		apiRow := e.buildAt(t, "queued", t0.Add(-90*time.Minute))
		e.exec(t, `UPDATE builds SET available_at = NULL WHERE id = ?`, apiRow) // as the ADE API leaves it
		e.build(t, "ready")
		e.build(t, "failed")

		got, err := e.s.ClaimBuilds(ctx, "w", time.Minute, 2)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, b := range got {
			ids = append(ids, b.ID)
		}
		sortLike(ids, []string{old, apiRow, newer})
		if fmt.Sprint(ids) != fmt.Sprint([]string{old, apiRow}) {
			t.Errorf("first claim = %v, want oldest two %v", ids, []string{old, apiRow})
		}
		got, err = e.s.ClaimBuilds(ctx, "w", time.Minute, 5)
		if err != nil || len(got) != 1 || got[0].ID != newer {
			t.Fatalf("second claim = %+v, %v; want only %s", got, err, newer)
		}
		r := e.buildRow(t, newer)
		if r.Status != "building" || r.ClaimedBy.String != "w" || r.AttemptCount != 1 {
			t.Errorf("claimed build: %+v", r)
		}
		nearNow(t, "claim_expires_at", r.ClaimExpiresAt, time.Minute)
	})
}

func TestClaimJobs(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		b1, b2 := e.build(t, "queued"), e.build(t, "queued")
		ready := e.build(t, "ready")
		r1 := e.run(t, ready, t0.Add(-time.Hour), t0.Add(-time.Hour))
		r2 := e.run(t, ready, t0.Add(-time.Minute), t0.Add(-time.Minute))

		// Builds come first and leave the rest of the slots to runs.
		builds, runs, err := e.s.ClaimJobs(ctx, "w", time.Minute, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(builds) != 2 || len(runs) != 1 || runs[0].ID != r1 {
			t.Fatalf("claimed builds %+v, runs %+v; want both builds and the older run %s", builds, runs, r1)
		}
		nearNow(t, "build lease", e.buildRow(t, b1).ClaimExpiresAt, time.Minute)
		nearNow(t, "build lease", e.buildRow(t, b2).ClaimExpiresAt, time.Minute)
		nearNow(t, "run lease", e.runRow(t, r1).ClaimExpiresAt, time.Minute)
		if r := e.runRow(t, r2); r.Status != "queued" {
			t.Errorf("run beyond the limit: %+v", r)
		}

		// A build limit of 0 claims runs only.
		builds, runs, err = e.s.ClaimJobs(ctx, "w", time.Minute, 0, 5)
		if err != nil || len(builds) != 0 || len(runs) != 1 || runs[0].ID != r2 {
			t.Fatalf("runs only: %+v %+v %v", builds, runs, err)
		}
	})
}

// fencedOp is one write about a claimed run.
type fencedOp struct {
	name string
	do   func(ctx context.Context, e *env, f store.Fence, docID string) error
}

var fencedOps = []fencedOp{
	{"Heartbeat", func(ctx context.Context, e *env, f store.Fence, _ string) error {
		return e.s.Heartbeat(ctx, f, time.Hour)
	}},
	{"FinishRun", func(ctx context.Context, e *env, f store.Fence, docID string) error {
		return e.s.FinishRun(ctx, f, store.RunOutcome{Succeeded: true, ExitCode: ptr(0), DocumentID: docID,
			Summary: testSummary("late")})
	}},
	{"Requeue", func(ctx context.Context, e *env, f store.Fence, _ string) error {
		return e.s.Requeue(ctx, f, time.Hour, "again")
	}},
	{"HandBack", func(ctx context.Context, e *env, f store.Fence, _ string) error {
		_, _, err := e.s.HandBack(ctx, f, "again", 3)
		return err
	}},
	{"StartDocument", func(ctx context.Context, e *env, f store.Fence, docID string) error {
		return e.s.StartDocument(ctx, f, docID)
	}},
}

// runState is everything a fenced write may touch.
type runState struct {
	Run     jobRow
	Doc     docRow
	Changes int
	Fields  int
}

func (e *env) runState(t *testing.T, runID, docID string) runState {
	t.Helper()
	st := runState{Run: e.runRow(t, runID), Doc: e.docRow(t, docID), Changes: len(e.docChanges(t, docID))}
	e.scan(t, &st.Fields, `SELECT COUNT(*) FROM run_fields WHERE run_id = ?`, runID)
	return st
}

func TestFencing(t *testing.T) {
	t.Parallel()
	fences := []struct {
		name   string
		mangle func(f store.Fence) store.Fence
	}{
		{"wrong worker", func(f store.Fence) store.Fence { f.Worker = "other"; return f }},
		{"older attempt", func(f store.Fence) store.Fence { f.Attempt--; return f }},
		{"newer attempt", func(f store.Fence) store.Fence { f.Attempt++; return f }},
		{"other run", func(f store.Fence) store.Fence { f.ID = store.NewID(); return f }},
	}
	for _, op := range fencedOps {
		t.Run(op.name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				docID := e.doc(t)
				runID := e.runFor(t, docID, "", t0.Add(-time.Hour), t0.Add(-time.Minute))
				good := e.claimRun(t, "w1", runID)
				before := e.runState(t, runID, docID)
				for _, fc := range fences {
					if err := op.do(ctx, e, fc.mangle(good), docID); !errors.Is(err, store.ErrLeaseLost) {
						t.Errorf("%s: err = %v, want ErrLeaseLost", fc.name, err)
					}
					if after := e.runState(t, runID, docID); after != before {
						t.Errorf("%s changed the run:\nbefore %+v\nafter  %+v", fc.name, before, after)
					}
				}
				if err := op.do(ctx, e, good, docID); err != nil {
					t.Fatalf("with the right fence: %v", err)
				}
				if after := e.runState(t, runID, docID); after == before {
					t.Errorf("the right fence changed nothing: %+v", after)
				}
			})
		})
	}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		runID := e.run(t, "", t0, t0)
		buildID := e.build(t, "queued")
		e.hold(t, store.KindRun, runID, "w", 2, 3, ptr(time.Now().Add(time.Minute)))
		e.hold(t, store.KindBuild, buildID, "w", 1, 3, ptr(time.Now().Add(time.Minute)))
		cases := []struct {
			f   store.Fence
			row func(testing.TB, string) jobRow
		}{
			{store.Fence{Kind: store.KindRun, ID: runID, Worker: "w", Attempt: 2}, e.runRow},
			{store.Fence{Kind: store.KindBuild, ID: buildID, Worker: "w", Attempt: 1}, e.buildRow},
		}
		for _, tc := range cases {
			if err := e.s.Heartbeat(ctx, tc.f, 5*time.Minute); err != nil {
				t.Fatalf("%s: %v", tc.f.Kind, err)
			}
			r := tc.row(t, tc.f.ID)
			nearNow(t, string(tc.f.Kind)+" claim_expires_at", r.ClaimExpiresAt, 5*time.Minute)
			if r.AttemptCount != tc.f.Attempt || r.ClaimedBy.String != "w" || r.Status == "queued" {
				t.Errorf("%s after heartbeat: %+v", tc.f.Kind, r)
			}
			// A finished job's lease cannot be renewed.
			e.exec(t, `UPDATE `+map[store.Kind]string{store.KindRun: "runs", store.KindBuild: "builds"}[tc.f.Kind]+
				` SET status = 'failed' WHERE id = ?`, tc.f.ID)
			if err := e.s.Heartbeat(ctx, tc.f, 10*time.Minute); !errors.Is(err, store.ErrLeaseLost) {
				t.Errorf("%s heartbeat after it ended: %v, want ErrLeaseLost", tc.f.Kind, err)
			}
		}
	})
}

func TestRequeue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		handBack    bool // HandBack with free hand-backs left, else Requeue
		message     string
		wantAttempt int
	}{
		{"counted", false, "Jobrunner died", 1},
		{"handed back, given back", true, "Supervisor shutting down", 0},
		{"no message", false, "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				ctx := context.Background()
				id := e.run(t, "", t0.Add(-time.Hour), t0.Add(-time.Minute))
				f := e.claimRun(t, "w", id)
				delay := 30 * time.Second
				var err error
				if tc.handBack {
					delay = 0 // a hand-back is claimable at once
					_, _, err = e.s.HandBack(ctx, f, tc.message, 3)
				} else {
					err = e.s.Requeue(ctx, f, delay, tc.message)
				}
				if err != nil {
					t.Fatal(err)
				}
				r := e.runRow(t, id)
				if r.Status != "queued" || r.AttemptCount != tc.wantAttempt || r.ClaimedBy.Valid || r.ClaimExpiresAt.Valid ||
					r.ErrorMessage.Valid != (tc.message != "") || r.ErrorMessage.String != tc.message {
					t.Errorf("requeued run: %+v", r)
				}
				nearNow(t, "available_at", r.AvailableAt, delay)
				// Not claimable before available_at (the database's
				// clock), claimable after.
				if delay > 0 {
					if got, _ := e.s.ClaimRuns(ctx, "w2", time.Minute, 5); len(got) != 0 {
						t.Errorf("claimed during backoff: %+v", got)
					}
					e.exec(t, `UPDATE runs SET available_at = ? WHERE id = ?`, e.ts(time.Now().Add(-time.Second)), id)
				}
				got, err := e.s.ClaimRuns(ctx, "w2", time.Minute, 5)
				if err != nil || len(got) != 1 || got[0].AttemptCount != tc.wantAttempt+1 {
					t.Errorf("claim after backoff: %+v %v", got, err)
				}
				// The old fence is dead.
				if err := e.s.Heartbeat(ctx, f, time.Hour); !errors.Is(err, store.ErrLeaseLost) {
					t.Errorf("old fence heartbeat: %v", err)
				}
			})
		})
	}
}

// A claimed run says when its build became ready, so the supervisor can tell
// queue wait from the wait for the build (ade_worker_job_build_wait_seconds).
func TestClaimedRunCarriesBuildReadyAt(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ready := t0.Add(-10 * time.Minute).UTC().Truncate(time.Second)
		build := e.build(t, "ready")
		e.exec(t, `UPDATE builds SET finished_at = ? WHERE id = ?`, store.Time{Time: ready, Valid: true}, build)
		withBuild := e.run(t, build, t0.Add(-time.Hour), t0.Add(-time.Hour))
		noBuild := e.run(t, "", t0.Add(-time.Hour), t0.Add(-time.Hour))
		e.exec(t, `UPDATE runs SET build_id = NULL WHERE id = ?`, noBuild) // "" means the newest build
		claimed, err := e.s.ClaimRuns(context.Background(), "w1", time.Minute, 10)
		if err != nil || len(claimed) != 2 {
			t.Fatalf("claimed %d runs: %v", len(claimed), err)
		}
		for _, c := range claimed {
			switch c.ID {
			case withBuild:
				if !c.BuildReadyAt.Valid || !c.BuildReadyAt.Time.Equal(ready) {
					t.Errorf("run with a build: BuildReadyAt %+v, want %s", c.BuildReadyAt, ready)
				}
			case noBuild:
				if c.BuildReadyAt.Valid {
					t.Errorf("run without a build: BuildReadyAt %+v, want NULL", c.BuildReadyAt)
				}
			}
		}
	})
}

// On PostgreSQL a claim's statements are each their own transaction: when
// the runs' take fails after builds were taken, the builds come back with
// the error (the caller runs them) and the runs stay queued.
func TestClaimJobsReturnsWhatItTookBeforeAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "postgres")
	ctx := context.Background()
	build := e.build(t, "queued")
	ready := e.build(t, "ready")
	run := e.run(t, ready, t0.Add(-time.Hour), t0.Add(-time.Hour))
	e.exec(t, `CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'runs are not to be claimed'; END $$`)
	e.exec(t, `CREATE TRIGGER refuse_claim BEFORE UPDATE ON runs FOR EACH ROW
WHEN (NEW.status = 'running') EXECUTE FUNCTION refuse_claim()`)
	// The schema goes back to the pool for other tests.
	t.Cleanup(func() { e.exec(t, `DROP TRIGGER refuse_claim ON runs; DROP FUNCTION refuse_claim()`) })

	builds, runs, err := e.s.ClaimJobs(ctx, "w", time.Minute, 2, 2)
	if err == nil || !strings.Contains(err.Error(), "runs are not to be claimed") {
		t.Fatalf("claim error = %v, want the trigger's", err)
	}
	if len(builds) != 1 || builds[0].ID != build || len(runs) != 0 {
		t.Fatalf("claim returned builds %+v, runs %+v; want the build it took", builds, runs)
	}
	if b := e.buildRow(t, build); b.Status != "building" || b.ClaimedBy.String != "w" {
		t.Errorf("build after the claim: %+v", b)
	}
	if r := e.runRow(t, run); r.Status != "queued" || r.AttemptCount != 0 {
		t.Errorf("run after the failed take: %+v", r)
	}
}

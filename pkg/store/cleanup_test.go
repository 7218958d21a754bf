package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// cleanupResult counts what cleanup changed.
type cleanupResult struct {
	RunsRequeued, RunsFailed, BuildsRequeued, BuildsFailed, RunsFailedByBuild int
}

// cleanup is the supervisor's cleanup pass over the store's statements,
// with the supervisor's policy for expired leases (retry after backoff
// while attempts remain, else fail) written out here.
func cleanup(t *testing.T, e *env, backoff func(int) time.Duration, buildTimeout time.Duration) cleanupResult {
	t.Helper()
	ctx := context.Background()
	var res cleanupResult
	for _, kind := range []store.Kind{store.KindRun, store.KindBuild} {
		jobs, err := e.s.ExpiredLeases(ctx, kind, 100)
		if err != nil {
			t.Fatal(err)
		}
		msg := map[store.Kind]string{store.KindRun: store.MsgRunLeaseExpired, store.KindBuild: store.MsgBuildLeaseExpired}[kind]
		var ds []store.LeaseExpiry
		for _, j := range jobs {
			d := store.LeaseExpiry{ID: j.ID, Attempt: j.AttemptCount, Message: msg, Delay: backoff(j.AttemptCount)}
			if j.AttemptCount >= j.MaxAttempts {
				d = store.LeaseExpiry{ID: j.ID, Attempt: j.AttemptCount, Fail: true, Message: fmt.Sprintf("%s after %d attempts", msg, j.AttemptCount)}
			}
			ds = append(ds, d)
		}
		requeued, failed, err := e.s.ExpireLeases(ctx, kind, ds)
		if err != nil {
			t.Fatal(err)
		}
		if kind == store.KindRun {
			res.RunsRequeued, res.RunsFailed = requeued, failed
		} else {
			res.BuildsRequeued, res.BuildsFailed = requeued, failed
		}
	}
	stuck, err := e.s.FailUnleasedBuilds(ctx, buildTimeout, fmt.Sprintf("Build timed out after %s", buildTimeout))
	if err != nil {
		t.Fatal(err)
	}
	res.BuildsFailed += stuck
	if res.RunsFailedByBuild, err = e.s.FailRunsOfFailedBuilds(ctx); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	backoff := func(attempt int) time.Duration { return time.Duration(attempt) * time.Minute }
	const buildTimeout = 10 * time.Minute
	// Leases are compared with the database's clock: the past and the
	// future are relative to the real now.
	now := time.Now()
	expired, live := ptr(now.Add(-time.Second)), ptr(now.Add(time.Hour))

	// newHeld makes a job of kind (a run queued an hour before t0, or a
	// queued build) that worker holds at attempt of maxAttempts, its lease
	// ending at expires (nil: no lease).
	newHeld := func(t *testing.T, e *env, kind store.Kind, worker string, attempt, maxAttempts int, expires *time.Time) string {
		var id string
		if kind == store.KindBuild {
			id = e.build(t, "queued")
		} else {
			id = e.run(t, "", t0.Add(-time.Hour), t0.Add(-time.Hour))
		}
		e.hold(t, kind, id, worker, attempt, maxAttempts, expires)
		return id
	}
	held := func(kind store.Kind, worker string, attempt, maxAttempts int, expires *time.Time) func(*testing.T, *env) (string, string) {
		return func(t *testing.T, e *env) (string, string) {
			return newHeld(t, e, kind, worker, attempt, maxAttempts, expires), ""
		}
	}
	// unleasedBuild is a build the ADE API marked building (it takes no
	// lease) startedAgo before now.
	unleasedBuild := func(startedAgo time.Duration) func(*testing.T, *env) (string, string) {
		return func(t *testing.T, e *env) (string, string) {
			id := newHeld(t, e, store.KindBuild, "api", 0, 3, nil)
			e.exec(t, `UPDATE builds SET started_at = ? WHERE id = ?`, e.ts(now.Add(-startedAgo)), id)
			return id, ""
		}
	}

	type want = cleanupWant
	cases := []struct {
		name  string
		kind  store.Kind
		setup func(t *testing.T, e *env) (id, docID string)
		want  want
	}{
		{"expired run with attempts left is re-queued", store.KindRun, held(store.KindRun, "dead", 2, 3, expired),
			want{status: "queued", attempt: 2, available: ptr(2 * time.Minute), errMsg: store.MsgRunLeaseExpired}},
		{"expired run out of attempts fails with its document", store.KindRun, func(t *testing.T, e *env) (string, string) {
			doc := e.doc(t)
			id := e.runFor(t, doc, "", t0.Add(-time.Hour), t0.Add(-time.Hour))
			e.hold(t, store.KindRun, id, "dead", 3, 3, expired)
			if err := e.s.StartDocument(context.Background(), store.Fence{Kind: store.KindRun, ID: id, Worker: "dead", Attempt: 3}, doc); err != nil {
				t.Fatal(err)
			}
			return id, doc
		}, want{status: "failed", attempt: 3, errMsg: store.MsgRunLeaseExpired + " after 3 attempts", finished: true, docStatus: "failed"}},
		{"expired run out of attempts, document not processing", store.KindRun, func(t *testing.T, e *env) (string, string) {
			doc := e.doc(t)
			id := e.runFor(t, doc, "", t0.Add(-time.Hour), t0.Add(-time.Hour))
			e.hold(t, store.KindRun, id, "dead", 1, 1, expired)
			return id, doc
		}, want{status: "failed", attempt: 1, errMsg: store.MsgRunLeaseExpired + " after 1 attempts", finished: true, docStatus: "uploaded"}},
		{"live run is left alone", store.KindRun, held(store.KindRun, "alive", 3, 3, live),
			want{status: "running", attempt: 3}},
		{"expired build with attempts left is re-queued", store.KindBuild, held(store.KindBuild, "dead", 1, 3, expired),
			want{status: "queued", attempt: 1, available: ptr(time.Minute), errMsg: store.MsgBuildLeaseExpired}},
		{"expired build out of attempts fails", store.KindBuild, held(store.KindBuild, "dead", 2, 2, expired),
			want{status: "failed", attempt: 2, errMsg: store.MsgBuildLeaseExpired + " after 2 attempts", finished: true}},
		{"live build is left alone", store.KindBuild, held(store.KindBuild, "alive", 2, 2, live),
			want{status: "building", attempt: 2}},
		{"unleased build past the build timeout fails", store.KindBuild, unleasedBuild(buildTimeout + time.Minute),
			want{status: "failed", errMsg: "Build timed out after 10m0s", finished: true}},
		{"unleased build within the build timeout is left alone", store.KindBuild, unleasedBuild(buildTimeout - time.Minute),
			want{status: "building"}},
		{"queued run of a failed build fails", store.KindRun, func(t *testing.T, e *env) (string, string) {
			return e.run(t, e.build(t, "failed"), t0.Add(-time.Hour), t0.Add(-time.Hour)), ""
		}, want{status: "failed", errMsg: store.MsgBuildFailedBefore, finished: true}},
		{"queued run of a cancelled build fails", store.KindRun, func(t *testing.T, e *env) (string, string) {
			return e.run(t, e.build(t, "cancelled"), t0.Add(-time.Hour), t0.Add(time.Hour)), ""
		}, want{status: "failed", errMsg: store.MsgBuildFailedBefore, finished: true}},
		{"queued run of a build that fails in the same pass fails", store.KindRun, func(t *testing.T, e *env) (string, string) {
			b := newHeld(t, e, store.KindBuild, "dead", 3, 3, expired)
			return e.run(t, b, t0.Add(-time.Hour), t0.Add(-time.Hour)), ""
		}, want{status: "failed", errMsg: store.MsgBuildFailedBefore, finished: true}},
		{"queued run of a re-queued build waits", store.KindRun, func(t *testing.T, e *env) (string, string) {
			b := newHeld(t, e, store.KindBuild, "dead", 1, 3, expired)
			return e.run(t, b, t0.Add(-time.Hour), t0.Add(-time.Hour)), ""
		}, want{status: "queued"}},
		{"queued run of a ready build waits", store.KindRun, func(t *testing.T, e *env) (string, string) {
			return e.run(t, e.build(t, "ready"), t0.Add(-time.Hour), t0.Add(-time.Hour)), ""
		}, want{status: "queued"}},
	}
	eachEnv(t, func(t *testing.T, e *env) {
		ids := make([]string, len(cases))
		docs := make([]string, len(cases))
		before := make([]jobRow, len(cases))
		row := func(i int) jobRow {
			if cases[i].kind == store.KindBuild {
				return e.buildRow(t, ids[i])
			}
			return e.runRow(t, ids[i])
		}
		for i, tc := range cases {
			ids[i], docs[i] = tc.setup(t, e)
			before[i] = row(i)
		}
		res := cleanup(t, e, backoff, buildTimeout)
		wantRes := cleanupResult{RunsRequeued: 1, RunsFailed: 2, BuildsRequeued: 2, BuildsFailed: 3, RunsFailedByBuild: 3}
		if res != wantRes {
			t.Errorf("Cleanup = %+v, want %+v", res, wantRes)
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				checkCleaned(t, e, row(i), before[i], tc.want, docs[i])
			})
		}
		// A second pass finds nothing more to do.
		if res := cleanup(t, e, backoff, buildTimeout); res != (cleanupResult{}) {
			t.Errorf("second cleanup = %+v", res)
		}
	})
}

// cleanupWant is what one cleanup case expects of its job's row.
type cleanupWant struct {
	status    store.Status
	attempt   int
	available *time.Duration // from now; nil: unchanged
	errMsg    string         // "": unchanged
	finished  bool
	docStatus string // "": the run has no document to check
}

// checkCleaned compares a job's row after cleanup (r) with the one before
// (b) and what the case wants (w); docID is the run's document.
func checkCleaned(t *testing.T, e *env, r, b jobRow, w cleanupWant, docID string) {
	t.Helper()
	if w.status == b.Status && w.available == nil && w.errMsg == "" && !w.finished {
		if r != b {
			t.Errorf("changed:\nbefore %+v\nafter  %+v", b, r)
		}
		return
	}
	if r.Status != w.status || (w.attempt != 0 && r.AttemptCount != w.attempt) {
		t.Errorf("status/attempt = %s/%d, want %s/%d", r.Status, r.AttemptCount, w.status, w.attempt)
	}
	if w.available != nil {
		nearNow(t, "available_at", r.AvailableAt, *w.available)
	} else if r.AvailableAt != b.AvailableAt {
		t.Errorf("available_at changed: %v -> %v", b.AvailableAt, r.AvailableAt)
	}
	if r.ErrorMessage.String != w.errMsg {
		t.Errorf("error_message = %q, want %q", r.ErrorMessage.String, w.errMsg)
	}
	if w.finished {
		nearNow(t, "completed/finished_at", r.FinishedAt, 0)
	}
	if r.Status == store.StatusQueued && (r.ClaimedBy.Valid || r.ClaimExpiresAt.Valid) {
		t.Errorf("re-queued job still claimed: %+v", r)
	}
	if r.Status == store.StatusFailed && r.ClaimExpiresAt.Valid {
		t.Errorf("failed job keeps a lease: %+v", r)
	}
	if w.docStatus != "" {
		d := e.docRow(t, docID)
		if d.Status != w.docStatus {
			t.Errorf("document = %+v, want %s", d, w.docStatus)
		}
		if w.docStatus == "failed" {
			ch := e.docChanges(t, docID)
			if d.Version != 3 || len(ch) != 2 || ch[1].DocumentVersion != 3 {
				t.Errorf("document version %d, changes %+v", d.Version, ch)
			}
		}
	}
}

// TestStaleLeaseIsPulledBack: a lease ending further ahead than any
// supervisor's lease (the database's clock was stepped back after it was
// written) is pulled back to one lease of its holder from now, so the dead
// holder's job is rescued a lease later instead of when the clock catches
// up; a live lease within its holder's length is left alone.
func TestStaleLeaseIsPulledBack(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		const lease = time.Second // short: the test waits one out; long enough for a loaded machine to refresh the live one
		for _, w := range []string{"dead", "alive"} {
			if err := e.s.RegisterWorker(ctx, store.WorkerInfo{WorkerID: w, Host: "h", PID: 1, Version: "test", Concurrency: 1, Lease: lease}); err != nil {
				t.Fatal(err)
			}
		}
		hourAhead, live := ptr(time.Now().Add(time.Hour)), ptr(time.Now().Add(lease/2))
		dead := e.run(t, "", t0, t0)
		e.hold(t, store.KindRun, dead, "dead", 1, 3, hourAhead)
		ghost := e.run(t, "", t0, t0) // its holder never registered
		e.hold(t, store.KindRun, ghost, "ghost", 1, 3, hourAhead)
		deadBuild := e.build(t, "queued")
		e.hold(t, store.KindBuild, deadBuild, "dead", 1, 3, hourAhead)
		alive := e.run(t, "", t0, t0)
		e.hold(t, store.KindRun, alive, "alive", 1, 3, live)
		aliveBefore := e.runRow(t, alive).ClaimExpiresAt

		for _, kind := range []store.Kind{store.KindRun, store.KindBuild} {
			jobs, err := e.s.ExpiredLeases(ctx, kind, 100)
			if err != nil || len(jobs) != 0 {
				t.Fatalf("ExpiredLeases(%s) = %+v, %v; want none expired yet", kind, jobs, err)
			}
		}
		now := time.Now()
		for name, row := range map[string]jobRow{"dead run": e.runRow(t, dead), "ghost run": e.runRow(t, ghost), "dead build": e.buildRow(t, deadBuild)} {
			if ahead := row.ClaimExpiresAt.Sub(now); ahead <= 0 || ahead > lease+time.Second {
				t.Errorf("%s: lease ends %v from now after the rescue pass, want within one lease (%v)", name, ahead, lease)
			}
		}
		if got := e.runRow(t, alive).ClaimExpiresAt; !got.Equal(aliveBefore.Time) {
			t.Errorf("live lease moved from %v to %v", aliveBefore, got)
		}

		// One lease later the dead holder's jobs are rescued as usual;
		// the live holder renews meanwhile (it is alive).
		deadline := time.Now().Add(10 * lease)
		for {
			e.exec(t, `UPDATE runs SET claim_expires_at = ? WHERE id = ?`, e.ts(time.Now().Add(lease)), alive)
			jobs, err := e.s.ExpiredLeases(ctx, store.KindRun, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(jobs) == 2 {
				got := map[string]bool{jobs[0].ID: true, jobs[1].ID: true}
				if !got[dead] || !got[ghost] {
					t.Fatalf("expired = %+v, want the dead and the ghost run", jobs)
				}
				break
			}
			if len(jobs) > 2 || time.Now().After(deadline) {
				t.Fatalf("expired = %+v %v after the pull-back, want the dead and the ghost run within about a lease", jobs, time.Since(now))
			}
			time.Sleep(lease / 8) // the rescue pass's cadence, not a wait for a condition
		}
	})
}

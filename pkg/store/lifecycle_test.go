package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// wantLifecycle is the lifecycle written out a second time, as a matrix:
// per event, the state each state goes to ("" = refused), for runs and
// builds alike unless the event is one kind's only (runsOnly).
var wantLifecycle = map[store.Event]map[store.State]store.State{
	store.EventClaim:               {store.StateQueued: store.StateActive},
	store.EventStart:               {store.StateActive: store.StateActive},
	store.EventRenew:               {store.StateActive: store.StateActive},
	store.EventSucceed:             {store.StateActive: store.StateSucceeded},
	store.EventFail:                {store.StateActive: store.StateFailed},
	store.EventRetryLater:          {store.StateActive: store.StateQueued},
	store.EventHandBack:            {store.StateActive: store.StateQueued},
	store.EventCancel:              {store.StateQueued: store.StateCancelled, store.StateActive: store.StateCancelled},
	store.EventRescueExpired:       {store.StateActive: store.StateQueued},
	store.EventRescueOutOfAttempts: {store.StateActive: store.StateFailed},
	store.EventFailForFailedBuild:  {store.StateQueued: store.StateFailed},
	store.EventOperatorRetry:       {store.StateFailed: store.StateQueued, store.StateCancelled: store.StateQueued},
}

var runsOnly = map[store.Event]bool{store.EventStart: true, store.EventFailForFailedBuild: true}

// TestLifecycleTable checks every (kind, state, event) against the matrix,
// without a database.
func TestLifecycleTable(t *testing.T) {
	t.Parallel()
	if len(wantLifecycle) != len(store.Events) {
		t.Fatalf("the matrix has %d events, the lifecycle %d", len(wantLifecycle), len(store.Events))
	}
	for _, k := range []store.Kind{store.KindRun, store.KindBuild} {
		for _, ev := range store.Events {
			for _, from := range store.States {
				want := wantLifecycle[ev][from]
				if k == store.KindBuild && runsOnly[ev] {
					want = ""
				}
				got, err := store.Next(k, from, ev)
				switch {
				case want == "" && !errors.Is(err, store.ErrRefused):
					t.Errorf("%s: %s of a %s went to %s, want refused", k, ev, from, got.To)
				case want != "" && (err != nil || got.To != want):
					t.Errorf("%s: %s of a %s = %s (%v), want %s", k, ev, from, got.To, err, want)
				}
			}
		}
	}
	// Every state has its ADE name per kind, and back.
	for _, k := range []store.Kind{store.KindRun, store.KindBuild} {
		for _, st := range store.States {
			if back, ok := store.StateOf(k, st.Status(k)); !ok || back != st {
				t.Errorf("%s: state %s is status %s, which reads back as %q", k, st, st.Status(k), back)
			}
		}
	}
	if store.StateActive.Status(store.KindBuild) != "building" || store.StateSucceeded.Status(store.KindBuild) != "ready" ||
		store.StateActive.Status(store.KindRun) != "running" || store.StateSucceeded.Status(store.KindRun) != "succeeded" {
		t.Error("the ADE names of the active and succeeded states are wrong")
	}
	if _, ok := store.StateOf(store.KindRun, store.StatusReady); ok {
		t.Error("a run cannot be ready")
	}
}

// lifecycleRow is what a transition changes on a job's row.
type lifecycleRow struct {
	Status       store.Status
	ClaimedBy    sql.NullString
	AttemptCount int
}

// lifecycleCase is one job row in one state.
type lifecycleCase struct {
	kind  store.Kind
	id    string
	doc   string // a run's document
	fence store.Fence
}

// executors apply each event through the store's own method, as its
// deciders do; an allowed transition must return no error.
var executors = map[store.Event]func(ctx context.Context, s *store.Store, c lifecycleCase) error{
	store.EventClaim: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		builds, runs := 0, 1
		if c.kind == store.KindBuild {
			builds, runs = 1, 0
		}
		b, r, err := s.ClaimJobs(ctx, "w2", time.Minute, builds, runs)
		if err == nil && len(b)+len(r) != 1 {
			err = errors.New("nothing claimed")
		}
		return err
	},
	store.EventStart: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		return s.StartDocument(ctx, c.fence, c.doc)
	},
	store.EventRenew: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		held, err := s.RenewLeases(ctx, c.fence.Worker, time.Minute, []store.Fence{c.fence})
		if err == nil && !held[c.fence] {
			err = store.ErrLeaseLost
		}
		return err
	},
	store.EventSucceed: func(ctx context.Context, s *store.Store, c lifecycleCase) error { return finish(ctx, s, c, true) },
	store.EventFail:    func(ctx context.Context, s *store.Store, c lifecycleCase) error { return finish(ctx, s, c, false) },
	store.EventRetryLater: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		return s.Requeue(ctx, c.fence, 0, "transient")
	},
	store.EventHandBack: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		_, _, err := s.HandBack(ctx, c.fence, "shut down", 1)
		return err
	},
	store.EventCancel: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		_, err := s.CancelJob(ctx, c.kind, c.id)
		return err
	},
	store.EventRescueExpired:       func(ctx context.Context, s *store.Store, c lifecycleCase) error { return expire(ctx, s, c, false) },
	store.EventRescueOutOfAttempts: func(ctx context.Context, s *store.Store, c lifecycleCase) error { return expire(ctx, s, c, true) },
	store.EventFailForFailedBuild: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		n, err := s.FailRunsOfFailedBuilds(ctx)
		if err == nil && n != 1 {
			err = fmt.Errorf("%d runs failed", n)
		}
		return err
	},
	store.EventOperatorRetry: func(ctx context.Context, s *store.Store, c lifecycleCase) error {
		_, _, err := s.RetryJob(ctx, c.kind, c.id)
		return err
	},
}

func finish(ctx context.Context, s *store.Store, c lifecycleCase, ok bool) error {
	code := 0
	if !ok {
		code = 1
	}
	if c.kind == store.KindBuild {
		return s.FinishBuild(ctx, c.fence, store.BuildOutcome{Succeeded: ok, ExitCode: &code})
	}
	return s.FinishRun(ctx, c.fence, store.RunOutcome{Succeeded: ok, ExitCode: &code, DocumentID: c.doc})
}

func expire(ctx context.Context, s *store.Store, c lifecycleCase, fail bool) error {
	requeued, failed, err := s.ExpireLeases(ctx, c.kind, []store.LeaseExpiry{{ID: c.id, Attempt: c.fence.Attempt, Fail: fail, Message: "expired"}})
	if err == nil && requeued+failed != 1 {
		err = errors.New("nothing rescued")
	}
	return err
}

// TestLifecycleOnDatabases drives every event through the store on a real
// row in every state, on both databases, and compares the row with the
// lifecycle: its status, its claim and its attempt count, or nothing
// changed where the lifecycle refuses.
func TestLifecycleOnDatabases(t *testing.T) {
	t.Parallel()
	for _, ev := range store.Events {
		if executors[ev] == nil {
			t.Fatalf("no executor for %s", ev)
		}
	}
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, k := range []store.Kind{store.KindRun, store.KindBuild} {
			for _, ev := range store.Events {
				tr, _ := store.Next(k, store.StateActive, ev)
				if k == store.KindBuild && runsOnly[ev] {
					continue // nothing to execute: the lifecycle refuses it (TestLifecycleTable)
				}
				for _, from := range store.States {
					c := e.lifecycleRow(t, k, from, tr.Guard == store.GuardExpired, ev == store.EventFailForFailedBuild)
					before := e.readLifecycleRow(t, c)
					err := executors[ev](ctx, e.s, c)
					after := e.readLifecycleRow(t, c)
					next, refused := store.Next(k, from, ev)
					name := fmt.Sprintf("%s %s of a %s", k, ev, from)
					if refused != nil {
						if after != before {
							t.Errorf("%s (refused) changed the row: %+v -> %+v", name, before, after)
						}
						continue
					}
					if err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					checkTransition(t, name, k, next, before, after)
				}
			}
		}
	})
}

func checkTransition(t *testing.T, name string, k store.Kind, tr store.Transition, before, after lifecycleRow) {
	t.Helper()
	if after.Status != tr.To.Status(k) {
		t.Errorf("%s: status %s, want %s", name, after.Status, tr.To.Status(k))
	}
	switch tr.Holder {
	case store.HolderSet:
		if after.ClaimedBy.String != "w2" {
			t.Errorf("%s: claimed_by %v, want the claiming worker", name, after.ClaimedBy)
		}
	case store.HolderCleared:
		if after.ClaimedBy.Valid {
			t.Errorf("%s: claimed_by %v, want NULL", name, after.ClaimedBy)
		}
	case store.HolderKept:
		if after.ClaimedBy != before.ClaimedBy {
			t.Errorf("%s: claimed_by %v -> %v, want kept", name, before.ClaimedBy, after.ClaimedBy)
		}
	}
	want := map[store.Attempts]int{store.AttemptsKept: before.AttemptCount, store.AttemptsAdd: before.AttemptCount + 1,
		store.AttemptsReturn: before.AttemptCount - 1, store.AttemptsReset: 0}[tr.Attempts]
	if after.AttemptCount != want {
		t.Errorf("%s: attempt_count %d -> %d, want %s", name, before.AttemptCount, after.AttemptCount, tr.Attempts)
	}
}

// lifecycleRow makes the only job of its kind: a run (with its own
// document; its build failed when buildFailed) or a build, in state from
// at attempt 1 of 3; an active one is held by worker "w" under a lease
// that ends in an hour, or ended an hour ago when expired. The rows of the
// case before are gone, so a claim can only take this one.
func (e *env) lifecycleRow(t *testing.T, k store.Kind, from store.State, expired, buildFailed bool) lifecycleCase {
	t.Helper()
	e.exec(t, `DELETE FROM runs`)
	e.exec(t, `UPDATE configurations SET active_build_id = NULL, active_build_fingerprint = NULL`)
	e.exec(t, `DELETE FROM builds`)
	c := lifecycleCase{kind: k}
	table := "builds"
	if k == store.KindRun {
		table = "runs"
		build := ""
		if buildFailed {
			build = e.build(t, "failed")
		}
		c.doc = e.doc(t)
		c.id = e.runFor(t, c.doc, build, t0, t0)
	} else {
		c.id = e.build(t, "queued")
	}
	c.fence = store.Fence{Kind: k, ID: c.id, Worker: "w", Attempt: 1}
	var claimedBy, expires any
	if from != store.StateQueued {
		claimedBy = "w"
	}
	if from == store.StateActive {
		expires = e.ts(time.Now().Add(time.Hour))
		if expired {
			expires = e.ts(time.Now().Add(-time.Hour))
		}
	}
	e.exec(t, `UPDATE `+table+` SET status = ?, attempt_count = 1, max_attempts = 3, claimed_by = ?, claim_expires_at = ? WHERE id = ?`,
		from.Status(k), claimedBy, expires, c.id)
	return c
}

func (e *env) readLifecycleRow(t *testing.T, c lifecycleCase) lifecycleRow {
	t.Helper()
	table := "runs"
	if c.kind == store.KindBuild {
		table = "builds"
	}
	var rows []lifecycleRow
	e.scan(t, &rows, `SELECT status, claimed_by, attempt_count FROM `+table+` WHERE id = ?`, c.id)
	if len(rows) != 1 {
		t.Fatalf("%s %s: %d rows", c.kind, c.id, len(rows))
	}
	return rows[0]
}

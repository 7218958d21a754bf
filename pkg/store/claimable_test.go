package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// TestClaimableAgrees: the four users of the claimable rule agree on a
// table of cases: the claim takes exactly the runs inspect calls
// claimable, and each case moves the queue gauges' ready count and the KEDA
// demand (PostgreSQL) by one exactly when it is claimable.
func TestClaimableAgrees(t *testing.T) {
	t.Parallel()
	const limit = 2
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name      string
		arrange   func(t *testing.T, w *queueWorld, ws string) string // returns the run to judge
		claimable bool
		reason    store.WaitReason // inspect's answer; "" for a run that is not queued
	}{
		{"due, build ready", func(t *testing.T, w *queueWorld, ws string) string { return w.run(t, ws) }, true, store.WaitClaimable},
		{"back-off", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			w.e.exec(t, `UPDATE runs SET available_at = ?, attempt_count = 1 WHERE id = ?`, w.e.ts(future), id)
			return id
		}, false, store.WaitBackoff},
		{"build not ready", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			w.e.exec(t, `UPDATE builds SET status = 'building' WHERE id = ?`, w.build[ws])
			return id
		}, false, store.WaitForBuild},
		{"build failed", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			w.e.exec(t, `UPDATE builds SET status = 'failed' WHERE id = ?`, w.build[ws])
			return id
		}, false, store.WaitBuildFailed},
		{"attempts exhausted", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			w.e.exec(t, `UPDATE runs SET attempt_count = max_attempts WHERE id = ?`, id)
			return id
		}, false, store.WaitAttemptsUsedUp},
		{"cancelled", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			w.e.exec(t, `UPDATE runs SET status = 'cancelled' WHERE id = ?`, id)
			return id
		}, false, ""},
		{"over the cap", func(t *testing.T, w *queueWorld, ws string) string {
			w.running(t, ws, limit)
			return w.run(t, ws)
		}, false, store.WaitWorkspaceCap},
		{"under the cap", func(t *testing.T, w *queueWorld, ws string) string {
			w.running(t, ws, limit-1)
			return w.run(t, ws)
		}, true, store.WaitClaimable},
		{"workspace paused", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			if _, err := w.e.s.SetPause(context.Background(), store.PauseWorkspace, w.ws[ws], "host-a"); err != nil {
				t.Fatal(err)
			}
			return id
		}, false, store.WaitPaused},
		{"configuration paused", func(t *testing.T, w *queueWorld, ws string) string {
			id := w.run(t, ws)
			if _, err := w.e.s.SetPause(context.Background(), store.PauseConfiguration, w.cfg[ws], "host-a"); err != nil {
				t.Fatal(err)
			}
			return id
		}, false, store.WaitPaused},
	}
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.s.SetClaimPolicy(store.ClaimPolicy{WorkspaceMaxRunning: limit})
		w := newQueueWorld(e)
		ready := func() int64 {
			stats, err := e.s.QueueStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range stats {
				if s.Kind == store.KindRun {
					return s.Ready
				}
			}
			t.Fatal("no run stats")
			return 0
		}
		// demand is the KEDA query's value less the running jobs: the
		// claimable part (PostgreSQL only: KEDA's scaler speaks to it).
		demand := func() float64 {
			if e.backend != "postgres" {
				return 0
			}
			var v, running float64
			e.scan(t, &v, store.DemandSQL(limit))
			e.scan(t, &running, `SELECT (SELECT count(*) FROM runs WHERE status = 'running') + (SELECT count(*) FROM builds WHERE status = 'building')`)
			return v - running
		}
		want, names := map[string]bool{}, map[string]string{}
		for i, tt := range tests {
			ws := string(rune('A' + i))
			w.workspace(t, ws)
			beforeReady, beforeDemand := ready(), demand()
			id := tt.arrange(t, w, ws)
			d, err := e.s.Inspect(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			why := d.WhyNotRunning(d.DBNow.Time)
			switch {
			case tt.reason == "" && why != nil:
				t.Errorf("%s: inspect says %s, want nothing (not queued)", tt.name, why.Reason)
			case tt.reason != "" && (why == nil || why.Reason != tt.reason):
				t.Errorf("%s: inspect says %+v, want %s", tt.name, why, tt.reason)
			}
			if (why != nil && why.Reason == store.WaitClaimable) != tt.claimable {
				t.Errorf("%s: inspect's verdict %+v, want claimable %v", tt.name, why, tt.claimable)
			}
			wantDelta := map[bool]int64{true: 1, false: 0}[tt.claimable]
			if got := ready() - beforeReady; got != wantDelta {
				t.Errorf("%s: the ready gauge moved by %d, want %d", tt.name, got, wantDelta)
			}
			if got := demand() - beforeDemand; e.backend == "postgres" && got != float64(wantDelta) {
				t.Errorf("%s: the KEDA demand moved by %v, want %d", tt.name, got, wantDelta)
			}
			want[id], names[id] = tt.claimable, tt.name
		}
		claimed, err := e.s.ClaimRuns(ctx, "w1", time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, r := range claimed {
			got[r.ID] = true
		}
		for id, c := range want {
			if got[id] != c {
				t.Errorf("%s: claimed %v, want %v", names[id], got[id], c)
			}
		}
		if len(claimed) != 2 {
			t.Errorf("claimed %d runs, want the 2 claimable ones", len(claimed))
		}
	})
}

package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// BenchmarkHeartbeatTick is the cost of one heartbeat tick: RenewLeases of
// every job a supervisor holds, in one statement, with 1,000 jobs running
// in all, held by 1 or by 10 supervisors. One op renews all 1,000 leases
// (one tick of each supervisor):
//
//	go test ./pkg/store -run '^$' -bench HeartbeatTick -benchtime 50x
func BenchmarkHeartbeatTick(b *testing.B) {
	const jobs = 1000
	for _, backend := range pgtemp.Backends {
		for _, sups := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/%d_jobs_%d_supervisors", backend, jobs, sups), func(b *testing.B) {
				e := newOwnEnv(b, backend)
				held := holdMany(b, e, jobs, sups)
				ctx := context.Background()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for w, fences := range held {
						got, err := e.s.RenewLeases(ctx, w, time.Minute, fences)
						if err != nil || len(got) != len(fences) {
							b.Fatalf("renewed %d of %d: %v", len(got), len(fences), err)
						}
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000/float64(sups), "ms/tick")
			})
		}
	}
}

// holdMany queues n runs and puts them running under sups workers, the
// attempt and lease of a claim.
func holdMany(b *testing.B, e *env, n, sups int) map[string][]store.Fence {
	b.Helper()
	held := map[string][]store.Fence{}
	ids := map[string][]string{}
	for i := 0; i < n; i++ {
		w := fmt.Sprintf("w%d", i%sups)
		id := e.run(b, "", t0, t0)
		ids[w] = append(ids[w], id)
		held[w] = append(held[w], store.Fence{Kind: store.KindRun, ID: id, Worker: w, Attempt: 1})
	}
	for w, list := range ids {
		e.exec(b, `UPDATE runs SET status = 'running', claimed_by = ?, attempt_count = 1, claim_expires_at = ?
			WHERE id IN ?`, w, e.ts(time.Now().Add(time.Hour)), list)
	}
	return held
}

// TestRenewLeases: one call renews the held jobs of both kinds and names
// those that did not renew (another attempt's, finished, another worker's).
// A lease past its end on the database's clock but still held (no rescue
// took it) renews: whether it ran out is the holder's to say on its own
// clock, and the database's clock may have been stepped forward.
func TestRenewLeases(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		live := ptr(time.Now().Add(time.Minute))
		r1, r2, r3, r4 := e.run(t, "", t0, t0), e.run(t, "", t0, t0), e.run(t, "", t0, t0), e.run(t, "", t0, t0)
		b1, b2 := e.build(t, "queued"), e.build(t, "queued")
		e.hold(t, store.KindRun, r1, "w", 1, 3, live)
		e.hold(t, store.KindRun, r2, "w", 2, 3, live)
		e.hold(t, store.KindRun, r3, "w", 1, 3, ptr(time.Now().Add(-time.Hour))) // past its end, still held
		e.hold(t, store.KindRun, r4, "other", 1, 3, live)
		e.hold(t, store.KindBuild, b1, "w", 1, 3, live)
		e.hold(t, store.KindBuild, b2, "w", 1, 3, live)
		e.exec(t, `UPDATE builds SET status = 'ready' WHERE id = ?`, b2)
		f := func(k store.Kind, id string, attempt int) store.Fence {
			return store.Fence{Kind: k, ID: id, Worker: "w", Attempt: attempt}
		}
		fences := []store.Fence{f(store.KindRun, r1, 1), f(store.KindRun, r2, 1), f(store.KindRun, r3, 1),
			f(store.KindRun, r4, 1), f(store.KindBuild, b1, 1), f(store.KindBuild, b2, 1)}
		got, err := e.s.RenewLeases(ctx, "w", 10*time.Minute, fences)
		if err != nil {
			t.Fatal(err)
		}
		want := map[store.Fence]bool{fences[0]: true, fences[2]: true, fences[4]: true}
		if len(got) != len(want) || !got[fences[0]] || !got[fences[2]] || !got[fences[4]] {
			t.Errorf("renewed %v, want only %v", got, want)
		}
		nearNow(t, "renewed run lease", e.runRow(t, r1).ClaimExpiresAt, 10*time.Minute)
		nearNow(t, "renewed lease that was past its end", e.runRow(t, r3).ClaimExpiresAt, 10*time.Minute)
		nearNow(t, "renewed build lease", e.buildRow(t, b1).ClaimExpiresAt, 10*time.Minute)
		nearNow(t, "other attempt's lease", e.runRow(t, r2).ClaimExpiresAt, time.Minute)
		// Rescued (re-queued) meanwhile: never renewed.
		e.exec(t, `UPDATE runs SET status = 'queued', claimed_by = NULL, claim_expires_at = NULL WHERE id = ?`, r3)
		if got, err := e.s.RenewLeases(ctx, "w", time.Minute, fences[2:3]); err != nil || len(got) != 0 {
			t.Errorf("renewal of a rescued job: %v %v, want none", got, err)
		}
		if got, err := e.s.RenewLeases(ctx, "w", time.Minute, nil); err != nil || len(got) != 0 {
			t.Errorf("no fences: %v %v", got, err)
		}
	})
}

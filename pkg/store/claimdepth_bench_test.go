package store_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// BenchmarkClaimAtDepth is the claim of 4 runs with a deep queue: 100,000
// queued runs over 1,000 workspaces (ADE_BENCH_QUEUED and
// ADE_BENCH_WORKSPACES change it), 8 running in 4 workspaces, fair and
// fifo order. It reports the median and p99 claim in µs.
//
//	go test ./pkg/store -run '^$' -bench ClaimAtDepth -benchtime 2000x
func BenchmarkClaimAtDepth(b *testing.B) {
	queued, workspaces := envInt("ADE_BENCH_QUEUED", 100000), envInt("ADE_BENCH_WORKSPACES", 1000)
	for _, backend := range pgtemp.Backends {
		e := newOwnEnv(b, backend)
		fillQueue(b, e, queued, workspaces)
		for _, p := range []struct {
			name   string
			policy store.ClaimPolicy
		}{{"fifo", store.ClaimPolicy{FIFO: true}}, {"fair", store.ClaimPolicy{}}} {
			b.Run(backend+"/"+p.name, func(b *testing.B) {
				e.s.SetClaimPolicy(p.policy)
				ctx := context.Background()
				took := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for range b.N {
					start := time.Now()
					runs, err := e.s.ClaimRuns(ctx, "bench", time.Minute, 4)
					took = append(took, time.Since(start))
					if err != nil || len(runs) != 4 {
						b.Fatalf("claim: %d runs, %v", len(runs), err)
					}
					b.StopTimer()
					for _, r := range runs { // finished at once: the running set stays the 8
						e.exec(b, `UPDATE runs SET status = 'succeeded' WHERE id = ?`, r.ID)
					}
					b.StartTimer()
				}
				b.StopTimer()
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// fillQueue inserts queued runs (no build: claimable) spread over
// workspaces, oldest first in workspace order round-robin, and holds 8 of
// them running in 4 workspaces.
func fillQueue(b *testing.B, e *env, queued, workspaces int) {
	b.Helper()
	series := fmt.Sprintf(`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < %d) `, queued)
	at := `strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour', '+' || (i / 1000.0) || ' seconds') || '000'`
	if e.backend == "postgres" {
		series = fmt.Sprintf(`WITH seq(i) AS (SELECT generate_series(1, %d)) `, queued)
		at = `now() - interval '1 hour' + i * interval '1 millisecond'`
	}
	e.exec(b, series+`INSERT INTO runs (id, configuration_id, workspace_id, input_document_id, status, created_at, available_at,
		attempt_count, max_attempts)
		SELECT 'run-' || i, 'cfg', 'ws-' || (i % `+strconv.Itoa(workspaces)+`), 'doc-' || i, 'queued', `+at+`, `+at+`, 0, 3 FROM seq`)
	e.exec(b, `UPDATE runs SET status = 'running', claimed_by = 'other', attempt_count = 1
		WHERE id IN (SELECT id FROM runs WHERE workspace_id IN ('ws-1', 'ws-2', 'ws-3', 'ws-4') ORDER BY created_at LIMIT 8)`)
	if e.backend == "postgres" {
		e.exec(b, `ANALYZE runs`)
	}
}

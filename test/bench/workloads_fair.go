package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// claimOrderAtDepth is depth's second part (issue 18): with the finished
// runs depth left in the table, 100,000 queued runs over 1,000 workspaces
// (8 running in 4 of them), it times store.ClaimRuns taking 4 runs in fair
// and in fifo order, alternately so that both see the same load; each
// claimed run is then marked succeeded (untimed). It reports µs per claim,
// median and p99, and fair ÷ fifo.
func (b *bench) claimOrderAtDepth(ctx context.Context, w *world, backend string) ([]row, error) {
	queued, workspaces, claims := 100_000, 1_000, 300
	if b.opts.quick {
		queued, workspaces, claims = 5_000, 100, 50
	}
	start := time.Now()
	if err := w.insertQueuedSpread(ctx, queued, workspaces); err != nil {
		return nil, err
	}
	b.logf("depth/%s: %d queued runs over %d workspaces (inserted in %.1fs)", backend, queued, workspaces, time.Since(start).Seconds())
	defer w.st.SetClaimPolicy(store.ClaimPolicy{})
	orders := []struct {
		name   string
		policy store.ClaimPolicy
	}{{"fair", store.ClaimPolicy{}}, {"fifo", store.ClaimPolicy{FIFO: true}}}
	took := map[string][]float64{}
	const warmup = 5
	for i := range warmup + claims {
		for _, o := range orders {
			w.st.SetClaimPolicy(o.policy)
			t0 := time.Now()
			runs, err := w.st.ClaimRuns(ctx, "bench-depth", 15*time.Minute, 4)
			d := time.Since(t0)
			if err != nil {
				return nil, fmt.Errorf("%s claim: %w", o.name, err)
			}
			if len(runs) != 4 {
				return nil, fmt.Errorf("%s claim took %d runs, want 4", o.name, len(runs))
			}
			if i >= warmup {
				took[o.name] = append(took[o.name], float64(d)/float64(time.Microsecond))
			}
			for _, r := range runs {
				if err := w.exec(ctx, `UPDATE runs SET status = 'succeeded', completed_at = started_at WHERE id = ?`, r.ID); err != nil {
					return nil, err
				}
			}
		}
	}
	depth := fmt.Sprintf("%s queued in %s workspaces", count(queued), count(workspaces))
	var rows []row
	for _, o := range orders {
		s := append([]float64(nil), took[o.name]...)
		sortFloats(s)
		b.logf("depth/%s: %s claim of 4: median %.0f µs, p99 %.0f µs", backend, o.name, percentile(s, 50), percentile(s, 99))
		rows = append(rows,
			row{"depth", backend, fmt.Sprintf("%s claim of 4 µs, %s (%d claims)", o.name, depth, claims), took[o.name], target{}, nil},
			row{"depth", backend, fmt.Sprintf("%s claim of 4 µs, p99", o.name), []float64{percentile(s, 99)}, target{}, nil})
	}
	rows = append(rows, row{"depth", backend, "fair ÷ fifo claim (medians)",
		[]float64{median(took["fair"]) / median(took["fifo"])}, below(2), nil})
	return rows, nil
}

// insertQueuedSpread adds n queued runs of the world's ready build spread
// round-robin over workspaces workspaces, an hour old and a millisecond
// apart, and makes 8 of them in 4 workspaces running (held elsewhere).
func (w *world) insertQueuedSpread(ctx context.Context, n, workspaces int) error {
	series := `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ` + strconv.Itoa(n) + `) `
	at := `strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour', '+' || (i / 1000.0) || ' seconds') || '000'`
	if w.backend == "postgres" {
		series = `WITH seq(i) AS (SELECT generate_series(1, ` + strconv.Itoa(n) + `)) `
		at = `now() - interval '1 hour' + i * interval '1 millisecond'`
	}
	err := w.exec(ctx, series+`INSERT INTO runs (id, configuration_id, workspace_id, build_id, input_document_id, status,
		created_at, available_at, attempt_count, max_attempts)
		SELECT 'depth-run-' || i, ?, 'depth-ws-' || (i % `+strconv.Itoa(workspaces)+`), ?, 'depth-doc-' || i, 'queued',
		`+at+`, `+at+`, 0, 3 FROM seq`, w.cfg, w.build)
	if err != nil {
		return err
	}
	err = w.exec(ctx, `UPDATE runs SET status = 'running', claimed_by = 'elsewhere', attempt_count = 1, started_at = created_at,
		claim_expires_at = ? WHERE id IN (SELECT id FROM runs WHERE workspace_id IN ('depth-ws-1', 'depth-ws-2', 'depth-ws-3', 'depth-ws-4')
		AND status = 'queued' ORDER BY created_at LIMIT 8)`, w.ts(time.Now().Add(24*time.Hour)))
	if err != nil {
		return err
	}
	if w.backend == "postgres" {
		return w.exec(ctx, "VACUUM ANALYZE runs")
	}
	return nil
}

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
// (8 running in 4 of them), it times store.ClaimJobs taking 4 runs in fair
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
			_, runs, err := w.st.ClaimJobs(ctx, "bench-depth", 15*time.Minute, 0, 4)
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

// workspaceIDs are one workspace of a world: its configuration and ready
// build.
type workspaceIDs struct{ ws, cfg, build string }

func (w *world) current() workspaceIDs { return workspaceIDs{w.ws, w.cfg, w.build} }

func (w *world) use(s workspaceIDs) { w.ws, w.cfg, w.build = s.ws, s.cfg, s.build }

// addWorkspace makes another workspace in the world, with its own
// configuration and a ready build whose venv is a copy of venv. The world's
// own workspace stays the current one.
func (w *world) addWorkspace(ctx context.Context, venv string) (s workspaceIDs, err error) {
	home := w.current()
	defer w.use(home)
	w.ws = store.NewID()
	if w.cfg, err = w.addConfig(ctx); err != nil {
		return s, err
	}
	if err := w.addReadyBuild(ctx, venv); err != nil {
		return s, err
	}
	return w.current(), nil
}

// enqueueIn is enqueue into workspace s.
func (w *world) enqueueIn(ctx context.Context, s workspaceIDs, batch string, n int, content []byte) ([]string, error) {
	home := w.current()
	defer w.use(home)
	w.use(s)
	return w.enqueue(ctx, batch, n, content)
}

// fairnessRun is what one fairness scenario measured.
type fairnessRun struct {
	bAfterA   float64 // runs of A that started after B was enqueued and before B started
	bWaitMs   float64 // B's run: enqueued to claimed
	cWaitMs   float64 // C's runs: median of enqueued to claimed
	aRunsPerS float64 // A's runs / (A's last completion - A's first start)
}

// fairness (issue 18): workspace A enqueues 2,000 quick runs, then 1 s
// later B enqueues 1 run and C 20; two supervisors of 4 slots work them.
// Measured from the database's timestamps: B's wait in runs of A started
// between B's enqueue and B's start (one turnover of the 8 slots is 8) and
// in ms, the median wait of C's runs, and A's throughput, in fifo order,
// fair order, and fair order with a cap of 1 run per workspace.
func (b *bench) fairness(ctx context.Context, backend string) ([]row, error) {
	nA, nC := 2000, 20
	if b.opts.quick {
		nA, nC = 100, 5
	}
	scenarios := []struct {
		name string
		env  map[string]string
	}{
		{"fifo", map[string]string{"ADE_WORKER_CLAIM_ORDER": "fifo"}},
		{"fair", map[string]string{"ADE_WORKER_CLAIM_ORDER": "fair"}},
		{"fair, cap 1", map[string]string{"ADE_WORKER_CLAIM_ORDER": "fair", "ADE_WORKER_WORKSPACE_MAX_RUNNING": "1"}},
	}
	got := map[string][]fairnessRun{}
	for rep := 1; rep <= b.opts.repeat; rep++ {
		for _, sc := range scenarios {
			r, err := b.fairnessOnce(ctx, backend, sc.env, nA, nC)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sc.name, err)
			}
			b.logf("fairness/%s %s rep %d: B waited %.0f runs of A, %.0f ms; C median %.0f ms; A %.1f runs/s",
				backend, sc.name, rep, r.bAfterA, r.bWaitMs, r.cWaitMs, r.aRunsPerS)
			got[sc.name] = append(got[sc.name], r)
		}
	}
	var rows []row
	for _, sc := range scenarios {
		var after, wait, cWait, rps, ratio []float64
		for i, r := range got[sc.name] {
			after, wait, cWait, rps = append(after, r.bAfterA), append(wait, r.bWaitMs), append(cWait, r.cWaitMs), append(rps, r.aRunsPerS)
			ratio = append(ratio, r.aRunsPerS/got["fifo"][i].aRunsPerS)
		}
		turnover := target{}
		if sc.name != "fifo" {
			turnover = below(8)
		}
		rows = append(rows,
			row{"fairness", backend, sc.name + ": B's wait, runs of A started before it", after, turnover, nil},
			row{"fairness", backend, sc.name + ": B's wait ms (enqueue → claim)", wait, target{}, nil},
			row{"fairness", backend, fmt.Sprintf("%s: C's %d runs, median wait ms", sc.name, nC), cWait, target{}, nil},
			row{"fairness", backend, fmt.Sprintf("%s: A's runs/s (%d runs, 2 supervisors × 4)", sc.name, nA), rps, target{}, nil})
		if sc.name != "fifo" {
			rows = append(rows, row{"fairness", backend, sc.name + ": A's runs/s ÷ fifo's", ratio, target{}, nil})
		}
	}
	return rows, nil
}

func (b *bench) fairnessOnce(ctx context.Context, backend string, env map[string]string, nA, nC int) (res fairnessRun, err error) {
	w, err := b.newReadyWorld(ctx, backend, "fairness", b.noopEnv)
	if err != nil {
		return res, err
	}
	defer w.close()
	a := w.current()
	bWs, err := w.addWorkspace(ctx, b.noopEnv)
	if err != nil {
		return res, err
	}
	cWs, err := w.addWorkspace(ctx, b.noopEnv)
	if err != nil {
		return res, err
	}
	for k, v := range env {
		w.env[k] = v
	}
	var sups []*supervisorProc
	defer func() {
		for _, s := range sups {
			if serr := s.stop(); err == nil {
				err = serr
			}
		}
	}()
	for range 2 {
		s, err := w.start(ctx, 4)
		if err != nil {
			return res, err
		}
		sups = append(sups, s)
	}
	batchA, batchB, batchC := store.NewID(), store.NewID(), store.NewID()
	if _, err := w.enqueueIn(ctx, a, batchA, nA, noopInput); err != nil {
		return res, err
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return res, err
	}
	if _, err := w.enqueueIn(ctx, bWs, batchB, 1, noopInput); err != nil {
		return res, err
	}
	if _, err := w.enqueueIn(ctx, cWs, batchC, nC, noopInput); err != nil {
		return res, err
	}
	rowsA, err := w.waitBatch(ctx, sups[0], batchA, nA, 2*time.Minute+time.Duration(nA)*100*time.Millisecond)
	if err != nil {
		return res, err
	}
	var rowsB, rowsC []runRow
	for _, x := range []struct {
		batch string
		n     int
		out   *[]runRow
	}{{batchB, 1, &rowsB}, {batchC, nC, &rowsC}} {
		if *x.out, err = w.batchRows(ctx, x.batch); err != nil {
			return res, err
		}
		if len(*x.out) != x.n {
			return res, fmt.Errorf("batch has %d runs, want %d", len(*x.out), x.n)
		}
		for _, r := range *x.out {
			if r.Status != "succeeded" {
				return res, fmt.Errorf("run %s %s: %s", r.ID, r.Status, r.ErrorMessage.String)
			}
		}
	}
	bRun := rowsB[0]
	first, last := rowsA[0].StartedAt.Time, rowsA[0].CompletedAt.Time
	for _, r := range rowsA {
		if r.StartedAt.After(bRun.CreatedAt.Time) && r.StartedAt.Before(bRun.StartedAt.Time) {
			res.bAfterA++
		}
		first, last = minTime(first, r.StartedAt.Time), maxTime(last, r.CompletedAt.Time)
	}
	res.bWaitMs = ms(bRun.StartedAt.Sub(bRun.CreatedAt.Time))
	var cWaits []float64
	for _, r := range rowsC {
		cWaits = append(cWaits, ms(r.StartedAt.Sub(r.CreatedAt.Time)))
	}
	res.cWaitMs = median(cWaits)
	res.aRunsPerS = float64(nA) / last.Sub(first).Seconds()
	return res, nil
}

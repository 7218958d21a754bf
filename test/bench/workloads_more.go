package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/procmem"
)

func sortFloats(v []float64) { sort.Float64s(v) }

// depth: the cost of the claim statement (store.ClaimJobs, in process, as
// the supervisor calls it) with one queued run and 1e3, 1e5 and 1e6
// finished runs in the table; then fair vs fifo claims with a deep queue
// (claimOrderAtDepth).
func (b *bench) depth(ctx context.Context, backend string) ([]row, error) {
	levels, claims := []int{1_000, 100_000, 1_000_000}, 200
	if b.opts.quick {
		levels, claims = []int{1_000, 10_000}, 50
	}
	w, err := b.newReadyWorld(ctx, backend, "depth", b.noopEnv)
	if err != nil {
		return nil, err
	}
	defer w.close()
	probe, err := w.enqueue(ctx, store.NewID(), 1, noopInput)
	if err != nil {
		return nil, err
	}
	var rows []row
	var medians []float64
	have := 0
	for _, level := range levels {
		start := time.Now()
		if err := w.insertFinished(ctx, level-have); err != nil {
			return rows, err
		}
		have = level
		b.logf("depth/%s: %d finished runs in the table (inserted in %.1fs)", backend, level, time.Since(start).Seconds())
		samples, err := w.claimCost(ctx, probe[0], claims)
		if err != nil {
			return rows, err
		}
		medians = append(medians, median(samples))
		b.logf("depth/%s: claim at %d finished: median %.0f µs", backend, level, median(samples))
		rows = append(rows, row{"depth", backend, fmt.Sprintf("claim µs at %s finished runs (%d claims)", count(level), claims), samples, target{}, nil})
	}
	last := len(levels) - 1
	rows = append(rows, row{"depth", backend, fmt.Sprintf("claim cost %s ÷ %s (medians)", count(levels[last]), count(levels[0])),
		[]float64{medians[last] / medians[0]}, below(2), nil})
	fair, err := b.claimOrderAtDepth(ctx, w, backend)
	return append(rows, fair...), err
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// insertFinished adds n succeeded runs in bulk, in chunks of 250,000 rows
// per statement. On PostgreSQL the table is then vacuumed and analyzed, as
// autovacuum would soon do after such a load.
func (w *world) insertFinished(ctx context.Context, n int) error {
	doc := store.NewID()
	ts := w.ts(time.Now().Add(-time.Hour))
	for left := n; left > 0; left -= 250_000 {
		k := min(left, 250_000)
		var q string
		if w.backend == "sqlite" {
			q = `WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
			INSERT INTO runs (id, configuration_id, workspace_id, build_id, input_document_id, status, exit_code,
				created_at, available_at, started_at, completed_at, attempt_count, max_attempts, claimed_by)
			SELECT lower(hex(randomblob(16))), ?, ?, ?, ?, 'succeeded', 0, ?, ?, ?, ?, 1, 3, 'bench' FROM seq`
		} else {
			q = `INSERT INTO runs (id, configuration_id, workspace_id, build_id, input_document_id, status, exit_code,
				created_at, available_at, started_at, completed_at, attempt_count, max_attempts, claimed_by)
			SELECT gen_random_uuid()::text, ?, ?, ?, ?, 'succeeded', 0, ?, ?, ?, ?, 1, 3, 'bench' FROM generate_series(1, ?::int)`
		}
		args := []any{w.cfg, w.ws, w.build, doc, ts, ts, ts, ts}
		if w.backend == "sqlite" {
			args = append([]any{k}, args...)
		} else {
			args = append(args, k)
		}
		if err := w.exec(ctx, q, args...); err != nil {
			return err
		}
	}
	if w.backend == "postgres" {
		return w.exec(ctx, "VACUUM ANALYZE runs")
	}
	return nil
}

// claimCost times store.ClaimJobs claiming the one queued run, n times
// after a few warm-up claims; the run is put back after each claim, untimed.
// It returns microseconds per claim.
func (w *world) claimCost(ctx context.Context, runID string, n int) ([]float64, error) {
	const warmup = 5
	var out []float64
	for i := 0; i < warmup+n; i++ {
		start := time.Now()
		_, got, err := w.st.ClaimJobs(ctx, "bench-depth", 15*time.Minute, 0, 1)
		took := time.Since(start)
		if err != nil {
			return nil, err
		}
		if len(got) != 1 || got[0].ID != runID {
			return nil, fmt.Errorf("claim returned %d runs, want the one queued run %s", len(got), runID)
		}
		if i >= warmup {
			out = append(out, float64(took)/float64(time.Microsecond))
		}
		err = w.exec(ctx, `UPDATE runs SET status = 'queued', attempt_count = 0, claimed_by = NULL,
			claim_expires_at = NULL, started_at = NULL WHERE id = ?`, runID)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// firehose: one run whose engine prints a million event lines as fast as it
// can; throughput into events.ndjson and the peak RSS of jobrunner and
// supervisor.
func (b *bench) firehose(ctx context.Context, backend string) ([]row, error) {
	lines := 1_000_000
	if b.opts.quick {
		lines = 50_000
	}
	w, err := b.newReadyWorld(ctx, backend, "firehose", b.noopEnv)
	if err != nil {
		return nil, err
	}
	defer w.close()
	content := []byte(fmt.Sprintf("#firehose=%d\n", lines) + string(noopInput))
	var rate, size, jr, sup, dur []float64
	for rep := 1; rep <= b.opts.repeat; rep++ {
		r, err := w.firehoseOnce(ctx, content, lines)
		if err != nil {
			return nil, err
		}
		b.logf("firehose/%s rep %d: %.0f MB in %.2fs = %.0f MB/s; peak RSS jobrunner %.1f MiB, supervisor %.1f MiB",
			backend, rep, r.mb, r.seconds, r.mb/r.seconds, r.jobrunnerMiB, r.supervisorMiB)
		rate, size, dur = append(rate, r.mb/r.seconds), append(size, r.mb), append(dur, r.seconds)
		jr, sup = append(jr, r.jobrunnerMiB), append(sup, r.supervisorMiB)
	}
	wl := "firehose"
	return []row{
		{wl, backend, fmt.Sprintf("MB/s into events.ndjson (%s lines)", count(lines)), rate, atLeast(100), nil},
		{wl, backend, "events.ndjson MB", size, target{}, nil},
		{wl, backend, "run duration s (started→completed)", dur, target{}, nil},
		{wl, backend, "jobrunner peak RSS MiB", jr, below(30), nil},
		{wl, backend, "supervisor peak RSS MiB", sup, below(30), nil},
	}, nil
}

type firehoseResult struct {
	mb, seconds                 float64
	jobrunnerMiB, supervisorMiB float64
}

func (w *world) firehoseOnce(ctx context.Context, content []byte, lines int) (firehoseResult, error) {
	sup, err := w.start(ctx, 1)
	if err != nil {
		return firehoseResult{}, err
	}
	defer sup.stop()
	if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
		return firehoseResult{}, err
	}
	sampler := procmem.SampleChildren(sup.pid, 10*time.Millisecond)
	batch := store.NewID()
	ids, err := w.enqueue(ctx, batch, 1, content)
	if err != nil {
		sampler.Stop()
		return firehoseResult{}, err
	}
	rows, err := w.waitBatch(ctx, sup, batch, 1, 10*time.Minute)
	peaks := sampler.Stop()
	if err != nil {
		return firehoseResult{}, err
	}
	_, supHWM, err := procmem.Status(sup.pid)
	if err != nil {
		return firehoseResult{}, err
	}
	if err := sup.stop(); err != nil {
		return firehoseResult{}, err
	}
	if peaks["jobrunner"] == 0 {
		return firehoseResult{}, fmt.Errorf("the jobrunner was never sampled (peaks seen: %v)", peaks)
	}
	events := filepath.Join(w.env["ADE_WORKSPACES_DIR"], w.ws, "runs", ids[0], "logs", "events.ndjson")
	size, ticks, err := countTicks(events)
	if err != nil {
		return firehoseResult{}, err
	}
	if ticks != lines {
		return firehoseResult{}, fmt.Errorf("%s holds %d engine.debug.tick lines, want %d", events, ticks, lines)
	}
	r := rows[0]
	return firehoseResult{
		mb: float64(size) / 1e6, seconds: r.CompletedAt.Sub(r.StartedAt.Time).Seconds(),
		jobrunnerMiB: float64(peaks["jobrunner"]) / 1024, supervisorMiB: float64(supHWM) / 1024,
	}, nil
}

// countTicks returns a file's size and how many of its lines are firehose events.
func countTicks(path string) (int64, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var size int64
	n := 0
	marker := []byte(`"event":"engine.debug.tick"`)
	for {
		line, err := br.ReadSlice('\n')
		size += int64(len(line))
		if bytes.Contains(line, marker) {
			n++
		}
		if err == bufio.ErrBufferFull {
			return 0, 0, fmt.Errorf("%s: a line longer than 1 MiB", path)
		}
		if err == io.EOF {
			return size, n, nil
		}
		if err != nil {
			return 0, 0, err
		}
	}
}

// builds: a cold build (venv + offline pip install of the test engine and
// configuration) and then a build of a second configuration with identical
// content, so the same fingerprint; from enqueue (created_at) to ready
// (finished_at). Each repeat is a fresh world with an empty pip cache.
func (b *bench) builds(ctx context.Context, backend string) ([]row, error) {
	var cold, again []float64
	for rep := 1; rep <= b.opts.repeat; rep++ {
		c, a, err := b.buildPair(ctx, backend)
		if err != nil {
			return nil, err
		}
		b.logf("builds/%s rep %d: cold %.2fs, same fingerprint %.2fs", backend, rep, c, a)
		cold, again = append(cold, c), append(again, a)
	}
	return []row{
		{"builds", backend, "cold build s (enqueue→ready)", cold, target{}, nil},
		{"builds", backend, "same-fingerprint build s (enqueue→ready)", again, below(1), nil},
	}, nil
}

func (b *bench) buildPair(ctx context.Context, backend string) (float64, float64, error) {
	w, err := b.newWorld(ctx, backend, "builds")
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	second, err := w.addConfig(ctx)
	if err != nil {
		return 0, 0, err
	}
	sup, err := w.start(ctx, 1)
	if err != nil {
		return 0, 0, err
	}
	defer sup.stop()
	var secs [2]float64
	var fps [2]string
	for i, cfg := range []string{w.cfg, second} {
		id, err := w.cli(ctx, "enqueue", "build", "--workspace", w.ws, "--configuration", cfg)
		if err != nil {
			return 0, 0, err
		}
		if secs[i], fps[i], err = w.waitBuild(ctx, sup, id); err != nil {
			return 0, 0, err
		}
	}
	if fps[0] != fps[1] {
		return 0, 0, fmt.Errorf("the two builds have different fingerprints (%s, %s)", fps[0], fps[1])
	}
	return secs[0], secs[1], sup.stop()
}

// waitBuild waits for a build to be ready and returns enqueue→ready seconds.
func (w *world) waitBuild(ctx context.Context, sup *supervisorProc, id string) (float64, string, error) {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		var r struct {
			Status       string
			ErrorMessage sql.NullString
			Fingerprint  string
			CreatedAt    store.Time
			FinishedAt   store.Time
		}
		if err := w.query(ctx, &r, `SELECT status, error_message, fingerprint, created_at, finished_at FROM builds WHERE id = ?`, id); err != nil {
			return 0, "", err
		}
		switch r.Status {
		case "ready":
			return r.FinishedAt.Sub(r.CreatedAt.Time).Seconds(), r.Fingerprint, nil
		case "failed", "cancelled":
			return 0, "", fmt.Errorf("build %s %s: %s", id, r.Status, r.ErrorMessage.String)
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("build %s still %s after 15 minutes", id, r.Status)
		}
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-sup.done:
			return 0, "", fmt.Errorf("supervisor exited early (%v); log %s", sup.err, sup.logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

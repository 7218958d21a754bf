package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// finish makes a run terminal at done; on SQLite some rows get the ADE API's
// naive text without fractions, so paging must compare stored values exactly.
func (e *env) finish(t *testing.T, id, status string, done time.Time, column string, naive bool) {
	t.Helper()
	var v any = e.ts(done)
	if naive && e.backend == "sqlite" {
		v = done.UTC().Format("2006-01-02 15:04:05")
	}
	e.exec(t, `UPDATE runs SET status = ?, `+column+` = ? WHERE id = ?`, status, v, id)
}

func TestFinishedRunsPagesInOrder(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var want []string
		// 7 runs finishing at the same second and 5 later ones: pages of 3
		// must cross ties without skipping or repeating.
		for i := 0; i < 12; i++ {
			id := e.run(t, "", t0, t0)
			done := t0.Add(-10 * 24 * time.Hour)
			if i >= 7 {
				done = done.Add(time.Duration(i) * time.Minute)
			}
			status, column := []string{"succeeded", "failed", "cancelled"}[i%3], "completed_at"
			if status == "cancelled" && i%2 == 0 {
				column = "cancelled_at" // the API may set only cancelled_at
			}
			e.finish(t, id, status, done, column, i%2 == 1)
			want = append(want, id)
		}
		young := e.run(t, "", t0, t0)
		e.finish(t, young, "succeeded", t0.Add(-time.Hour), "completed_at", false)
		e.run(t, "", t0, t0) // queued: never listed

		var got []string
		cur := e.s.RunsFrom(time.Time{})
		for page := 0; page < 10; page++ {
			runs, next, err := e.s.FinishedRuns(ctx, t0.Add(-24*time.Hour), cur, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range runs {
				if !r.DoneAt.Valid || r.DoneAt.After(t0.Add(-24*time.Hour)) {
					t.Errorf("run %s done at %v, want before the cutoff", r.ID, r.DoneAt)
				}
				got = append(got, r.ID)
			}
			if len(runs) < 3 {
				break
			}
			cur = next
		}
		if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) || len(got) != len(want) {
			t.Errorf("listed %d runs %v, want the %d old ones %v", len(got), got, len(want), want)
		}
		// A cursor from a time skips what finished before it.
		runs, _, err := e.s.FinishedRuns(ctx, t0, e.s.RunsFrom(t0.Add(-2*time.Hour)), 100)
		if err != nil || len(runs) != 1 || runs[0].ID != young {
			t.Errorf("from 2h ago: %+v, %v; want only %s", runs, err, young)
		}
	})
}

func sorted(ids []string) string {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	var out []string
	for id := range m {
		out = append(out, id)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return strings.Join(out, ",")
}

func TestBuildsInUseAndLastUse(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		active, queuedFor, runningFor, idle, unused := e.build(t, "ready"), e.build(t, "ready"), e.build(t, "ready"), e.build(t, "ready"), e.build(t, "ready")
		e.exec(t, `UPDATE configurations SET active_build_id = ? WHERE id = ?`, active, e.cfg)
		e.run(t, queuedFor, t0, t0)
		e.hold(t, store.KindRun, e.run(t, runningFor, t0, t0), "w", 1, 3, nil)
		for i, d := range []time.Duration{40, 35, 50} { // days ago
			id := e.run(t, idle, t0, t0)
			e.finish(t, id, "succeeded", t0.Add(-d*24*time.Hour), "completed_at", i == 1)
		}
		used, err := e.s.BuildsInUse(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{active, queuedFor, runningFor} {
			if used[id] == "" {
				t.Errorf("build %s not in use: %v", id, used)
			}
		}
		if len(used) != 3 || !strings.Contains(used[active], "active build") || !strings.Contains(used[runningFor], "running") {
			t.Errorf("in use: %v", used)
		}
		last, err := e.s.BuildLastUse(ctx, idle)
		sameTime(t, "last use", last, t0.Add(-35*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if last, err := e.s.BuildLastUse(ctx, unused); err != nil || last.Valid {
			t.Errorf("unused build: last use %v, %v; want none", last, err)
		}
		all, err := e.s.Builds(ctx, "", 2)
		if err != nil || len(all) != 2 || all[0].ID > all[1].ID {
			t.Errorf("Builds page: %+v, %v", all, err)
		}
	})
}

func TestGCLockIsExclusive(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		other := pgtemp.Open(t, e.url) // another process would hold its own handle
		release, ok, err := e.s.TryGCLock(ctx)
		if err != nil || !ok {
			t.Fatalf("first lock: ok %v, %v", ok, err)
		}
		if _, ok, err := other.TryGCLock(ctx); err != nil || ok {
			t.Fatalf("second lock while held: ok %v, %v; want refused", ok, err)
		}
		release()
		release2, ok, err := other.TryGCLock(ctx)
		if err != nil || !ok {
			t.Fatalf("lock after release: ok %v, %v", ok, err)
		}
		release2()
	})
}

// TestGCQueriesUseIndexes checks the plans: the finished-runs page and the
// last-use probe must read their partial indexes, not scan runs.
func TestGCQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	eachNewEnv(t, func(t *testing.T, e *env) {
		explain := "EXPLAIN QUERY PLAN "
		if e.backend == "postgres" {
			explain = "EXPLAIN "
			e.exec(t, "SET enable_seqscan = off") // tiny tables: ask which index is usable
		}
		plan := func(q string, args ...any) string {
			rows, err := e.s.TestDB().Raw(explain+q, args...).Rows()
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			var b strings.Builder
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				_ = rows.Scan(ptrs...)
				fmt.Fprintln(&b, vals...)
			}
			return b.String()
		}
		terminal := `status IN ('succeeded', 'failed', 'cancelled')`
		if e.backend == "sqlite" {
			terminal = "likely(" + terminal + ")" // as FinishedRuns writes it
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`AND COALESCE(completed_at, cancelled_at) = ? AND id > ? ORDER BY id LIMIT 10`, []any{e.ts(t0), "x"}},
			{`AND COALESCE(completed_at, cancelled_at) > ? ORDER BY COALESCE(completed_at, cancelled_at), id LIMIT 10`, []any{e.ts(t0)}},
		} {
			p := plan(`SELECT id FROM runs WHERE `+terminal+` AND COALESCE(completed_at, cancelled_at) < ? `+q.sql, append([]any{e.ts(t0)}, q.args...)...)
			if !strings.Contains(p, "ix_runs_finished_gc") {
				t.Errorf("finished runs plan does not use ix_runs_finished_gc:\n%s", p)
			}
			if e.backend == "sqlite" && !strings.Contains(p, "<expr>=? AND id>?") && !strings.Contains(p, "<expr>>? AND <expr><?") {
				t.Errorf("finished runs plan does not seek both bounds:\n%s", p)
			}
		}
		p := plan(`SELECT COALESCE(completed_at, started_at) FROM runs WHERE build_id = ? AND COALESCE(completed_at, started_at) IS NOT NULL
			ORDER BY COALESCE(completed_at, started_at) DESC LIMIT 1`, "b")
		if !strings.Contains(p, "ix_runs_build_last_use") {
			t.Errorf("last use plan does not use ix_runs_build_last_use:\n%s", p)
		}
	})
}

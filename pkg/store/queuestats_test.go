package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

func TestQueueStats(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		now := time.Now().UTC().Truncate(time.Microsecond) // ready or delayed: on the database's clock
		ready := e.build(t, "ready")
		e.run(t, ready, now.Add(-time.Hour), now.Add(-10*time.Minute)) // ready, oldest
		e.run(t, ready, now.Add(-time.Hour), now.Add(-time.Minute))    // ready
		e.run(t, ready, now.Add(-time.Hour), now.Add(time.Minute))     // delayed (backoff)
		spent := e.run(t, ready, now.Add(-2*time.Hour), now.Add(-time.Hour))
		e.exec(t, `UPDATE runs SET attempt_count = max_attempts WHERE id = ?`, spent) // attempts used up: not ready
		running := e.run(t, ready, now.Add(-time.Hour), now.Add(-time.Hour))
		e.hold(t, store.KindRun, running, "w", 1, 3, ptr(now.Add(time.Minute)))
		done := e.run(t, ready, now.Add(-3*time.Hour), now.Add(-3*time.Hour))
		e.exec(t, `UPDATE runs SET status = 'succeeded' WHERE id = ?`, done)
		e.build(t, "queued") // created an hour before t0, never claimed
		building := e.build(t, "queued")
		e.hold(t, store.KindBuild, building, "w", 1, 3, ptr(now.Add(time.Minute)))

		stats, err := e.s.QueueStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := map[store.Kind]store.QueueStat{}
		for _, s := range stats {
			got[s.Kind] = s
		}
		run, build := got[store.KindRun], got[store.KindBuild]
		if run.Ready != 2 || run.Delayed != 1 || run.Running != 1 {
			t.Errorf("runs: ready %d, delayed %d, running %d; want 2, 1, 1", run.Ready, run.Delayed, run.Running)
		}
		sameTime(t, "oldest ready run", run.OldestReady, now.Add(-10*time.Minute))
		nearNow(t, "the database's clock", run.Now, 0)
		if build.Ready != 1 || build.Delayed != 0 || build.Running != 1 {
			t.Errorf("builds: ready %d, delayed %d, running %d; want 1, 0, 1", build.Ready, build.Delayed, build.Running)
		}
		sameTime(t, "oldest ready build", build.OldestReady, t0.Add(-time.Hour))
	})
}

func TestQueueStatsEmpty(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		stats, err := e.s.QueueStats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(stats) != 2 {
			t.Fatalf("stats = %+v, want one row per kind", stats)
		}
		for _, s := range stats {
			if s.Ready != 0 || s.Delayed != 0 || s.Running != 0 || s.OldestReady.Valid {
				t.Errorf("%s on an empty queue: %+v", s.Kind, s)
			}
		}
	})
}

package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// TestWorkerRows: a registered supervisor is listed up; refreshed, it holds
// what it reported; not seen for longer than its lease it is gone; a day
// later its row is removed, and a fresh row stays.
func TestWorkerRows(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, id := range []string{"old", "fresh"} {
			if err := e.s.RegisterWorker(ctx, store.WorkerInfo{WorkerID: id, Host: "h", PID: 7, Version: "v1", Concurrency: 3, Lease: 2 * time.Second}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.s.BeatWorker(ctx, store.Beat{WorkerID: "fresh", JobsHeld: 2, Draining: true, LeaderTTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		w, err := e.s.Worker(ctx, "fresh")
		if err != nil || w.Gone || w.JobsHeld != 2 || !w.Draining || w.PID != 7 || w.Concurrency != 3 || w.LeaseSeconds != 2 || w.SinceSeen() > time.Second {
			t.Fatalf("fresh row = %+v, %v", w, err)
		}
		e.exec(t, `UPDATE ade_worker_supervisors SET last_seen_at = ? WHERE worker_id = 'old'`, e.s.TestTime(time.Now().Add(-3*time.Second)))
		if w, err := e.s.Worker(ctx, "old"); err != nil || !w.Gone {
			t.Fatalf("row not seen for longer than its lease = %+v, %v; want gone", w, err)
		}
		if n, err := e.s.RemoveGoneWorkers(ctx, 24*time.Hour); err != nil || n != 0 {
			t.Fatalf("RemoveGoneWorkers of a row gone for seconds = %d, %v; want it kept", n, err)
		}
		e.exec(t, `UPDATE ade_worker_supervisors SET last_seen_at = ? WHERE worker_id = 'old'`, e.s.TestTime(time.Now().Add(-25*time.Hour)))
		if n, err := e.s.RemoveGoneWorkers(ctx, 24*time.Hour); err != nil || n != 1 {
			t.Fatalf("RemoveGoneWorkers of a row gone for a day = %d, %v; want 1", n, err)
		}
		rows, err := e.s.Workers(ctx)
		if err != nil || len(rows) != 1 || rows[0].WorkerID != "fresh" {
			t.Fatalf("Workers = %+v, %v; want the fresh row only", rows, err)
		}
		if err := e.s.RemoveWorker(ctx, "fresh"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Worker(ctx, "fresh"); err != store.ErrNotFound {
			t.Fatalf("Worker after RemoveWorker: %v, want ErrNotFound", err)
		}
	})
}

package supervisor

import (
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// TestHoldersAfterAClockStep: the leader reads the rows for the first time
// after the database's clock stepped forward, so every row looks gone. Its
// own jobs and those of a holder whose beat then moves get the grace; a
// holder that stays still is rescued.
func TestHoldersAfterAClockStep(t *testing.T) {
	const lease = 2 * time.Second
	stepped := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC) // an hour behind the database's now
	row := func(id string, lastSeen time.Time) store.WorkerRow {
		return store.WorkerRow{WorkerID: id, LastSeenAt: store.Time{Time: lastSeen, Valid: true}, LeaseSeconds: lease.Seconds(), Gone: true}
	}
	expired := func(holder, expiresAt string) store.ExpiredLease {
		return store.ExpiredLease{ID: "job-of-" + holder, AttemptCount: 1, MaxAttempts: 3, ClaimedBy: holder, ExpiresAt: expiresAt}
	}
	rescued := func(jobs []store.ExpiredLease) map[string]bool {
		got := map[string]bool{}
		for _, j := range jobs {
			got[j.ClaimedBy] = true
		}
		return got
	}
	var h holders
	now := time.Now()
	h.record([]store.WorkerRow{row("leader", stepped), row("dead", stepped)}, "leader", lease, now)
	first := []store.ExpiredLease{expired("leader", "a"), expired("dead", "a")}
	if got := rescued(h.rescuable(store.KindRun, first)); !got["dead"] || got["leader"] {
		t.Fatalf("first pass rescued %v, want the dead holder's job only", got)
	}

	// A second holder, first seen gone, beats before the grace ends.
	h.record([]store.WorkerRow{row("leader", stepped), row("other", stepped)}, "leader", lease, now)
	h.record([]store.WorkerRow{row("leader", stepped), row("other", stepped.Add(time.Second))}, "leader", lease, now.Add(lease/3))
	jobs := []store.ExpiredLease{expired("leader", "b"), expired("other", "b")}
	if got := rescued(h.rescuable(store.KindRun, jobs)); len(got) != 0 {
		t.Fatalf("rescued %v at the first sight of live holders' expired leases, want none", got)
	}

	// Still expired (the same lease end) half a lease later: the holders
	// stopped renewing those jobs, whoever they are.
	h.mu.Lock()
	for k, at := range h.expired {
		h.expired[k] = at.Add(-lease / 2)
	}
	h.mu.Unlock()
	if got := rescued(h.rescuable(store.KindRun, jobs)); !got["leader"] || !got["other"] {
		t.Fatalf("rescued %v after the grace, want both", got)
	}
}

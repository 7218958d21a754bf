package supervisor

import (
	"context"
	"sync"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// holders is the leader's view of which supervisors are alive, kept on its
// own monotonic clock so that a step of the database's clock cannot fool
// it. Stepped forward (a VM restore, an NTP correction), the database's
// clock makes every running job's lease look expired at once; rescued at
// that moment, every one of them would run a second time although its
// holder is alive and renews it within a heartbeat.
//
// A holder is alive while the leader has seen its row's last_seen_at
// change within the last lease (or, seen for the first time, while the row
// is not gone on the database's clock). An expired lease of a live holder
// gets a grace of half a lease from when the leader first saw it expired:
// renewed meanwhile, it is no longer expired; still expired after it, the
// holder has stopped renewing that job and it is rescued as usual. An
// expired lease of a dead or unknown holder is rescued at once, as before.
type holders struct {
	mu      sync.Mutex
	seen    map[string]beatSeen
	expired map[expiredKey]time.Time
}

type beatSeen struct {
	lastSeen string        // the row's last_seen_at as last read
	changed  time.Time     // when the leader saw it change (monotonic)
	lease    time.Duration // the holder's own lease
}

// expiredKey is one lease as it ended: a renewal changes ExpiresAt.
type expiredKey struct {
	kind      store.Kind
	id        string
	attempt   int
	expiresAt string
}

// observe reads every supervisor's row and records whose beat moved.
func (h *holders) observe(ctx context.Context, st *store.Store, self string, selfLease time.Duration) error {
	rows, err := st.Workers(ctx)
	if err != nil {
		return err
	}
	h.record(rows, self, selfLease, time.Now())
	return nil
}

// record is observe's bookkeeping at now. The leader itself (self) is
// alive whatever its row says: running this, it is. Without that, a
// leader whose first reading of its own row came after the clock stepped
// forward (it reads only while jobs run) took that row for gone and
// rescued its own live jobs (seen under load in
// TestClockSteppedForwardRerunsNothing).
func (h *holders) record(rows []store.WorkerRow, self string, selfLease time.Duration, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = map[string]beatSeen{}
	}
	present := map[string]bool{self: true}
	for _, r := range rows {
		present[r.WorkerID] = true
		v := r.LastSeenAt.Time.UTC().Format(time.RFC3339Nano)
		lease := time.Duration(r.LeaseSeconds * float64(time.Second))
		old, ok := h.seen[r.WorkerID]
		switch {
		case r.WorkerID == self: // set after the loop, whatever the row says
		case !ok && r.Gone:
			h.seen[r.WorkerID] = beatSeen{lastSeen: v, changed: now.Add(-2 * lease), lease: lease}
		case !ok || old.lastSeen != v:
			h.seen[r.WorkerID] = beatSeen{lastSeen: v, changed: now, lease: lease}
		}
	}
	h.seen[self] = beatSeen{changed: now, lease: selfLease}
	for id := range h.seen {
		if !present[id] {
			delete(h.seen, id)
		}
	}
}

// rescuable keeps the expired leases to rescue now: those of holders not
// alive, and those of live holders still expired half a lease after the
// leader first saw them so.
func (h *holders) rescuable(kind store.Kind, jobs []store.ExpiredLease) []store.ExpiredLease {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.expired == nil {
		h.expired = map[expiredKey]time.Time{}
	}
	out := jobs[:0:0]
	for _, j := range jobs {
		b, known := h.seen[j.ClaimedBy]
		if !known || now.Sub(b.changed) >= b.lease {
			out = append(out, j)
			continue
		}
		k := expiredKey{kind, j.ID, j.AttemptCount, j.ExpiresAt}
		first, ok := h.expired[k]
		if !ok {
			h.expired[k] = now
			continue
		}
		if now.Sub(first) >= b.lease/2 {
			out = append(out, j)
		}
	}
	// Forget what was renewed or rescued since.
	for k, first := range h.expired {
		if now.Sub(first) > time.Hour {
			delete(h.expired, k)
		}
	}
	return out
}

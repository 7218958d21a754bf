package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// TestPoolSizeAndIdleTrim: statements at once use at most the pool's size
// of server sessions; overlapping now and then (fewer goroutines than the
// pool, with gaps), they first cost a connect each, then a busy spell keeps
// the sessions (no connect per statement); idle, the pool shrinks to one
// session. PostgreSQL only: an SQLite connection is a file in this process.
// It lives with the end-to-end tests because it waits on the pool's real
// timers (a 5 s burst, a 10 s busy spell): in pkg/store it was
// the package's whole wall time.
func TestPoolSizeAndIdleTrim(t *testing.T) {
	t.Parallel()
	url := pgtemp.ForTest(t, "ade_store")
	u, err := settings.ParseDatabaseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const size, app = 4, "ade-worker pool-test"
	s, err := store.Open(ctx, u, store.Options{PoolSize: size, AppName: app})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	admin := pgtemp.Open(t, url)
	sessions := func() (n int) {
		if err := admin.TestDB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE application_name = ? AND datname = current_database()`, app).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Sessions ended on the database so far (counted when they end).
	ended := func() (n int) {
		if err := admin.TestDB().Raw(`SELECT sessions FROM pg_stat_database WHERE datname = current_database()`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}

	// size-1 goroutines for 5 s, each a short statement then a short gap.
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(5 * time.Second)
	for i := 0; i < size-1; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := s.TestDB().Exec(`SELECT pg_sleep(0.002)`).Error; err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	endedBefore := -1
	peak, pids := 0, map[int]bool{}
	for time.Now().Before(stop) {
		var ps []int
		if err := admin.TestDB().Raw(`SELECT pid FROM pg_stat_activity WHERE application_name = ? AND datname = current_database()`, app).Scan(&ps).Error; err != nil {
			t.Fatal(err)
		}
		peak = max(peak, len(ps))
		for _, p := range ps {
			pids[p] = true
		}
		if endedBefore < 0 && time.Since(start) > 3*time.Second {
			endedBefore = ended()
		}
		time.Sleep(20 * time.Millisecond)
	}
	endedLate := ended() - endedBefore
	wg.Wait()
	if peak > size || peak < 2 {
		t.Errorf("burst used up to %d sessions, want 2 to the pool size %d", peak, size)
	}
	// From 3 s on the busy spell keeps the sessions: none ends.
	if endedLate > 1 {
		t.Errorf("%d sessions ended in the burst's last 2 s, want the busy pool kept", endedLate)
	}
	// Idle: down to one session once the busy spell ends.
	deadline := time.Now().Add(30 * time.Second)
	for sessions() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("idle pool still has %d sessions after 30 s, want 1", sessions())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("burst: %d sessions at most, %d seen by sampling, %d ended in its first 3 s, %d in its last 2 s; idle: 1", peak, len(pids), endedBefore, endedLate)
}

package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// TestLeaderElection: the first supervisor to beat leads and keeps leading
// while it beats; another takes over only once the leadership expired (a
// killed leader), or lies more than one TTL ahead (the database's clock
// stepped back), or the leader stepped down or drains; `workers` shows who
// leads.
func TestLeaderElection(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, id := range []string{"a", "b"} {
			if err := e.s.RegisterWorker(ctx, store.WorkerInfo{WorkerID: id, Host: "h", PID: 1, Version: "v", Concurrency: 2, Lease: time.Minute}); err != nil {
				t.Fatal(err)
			}
		}
		beat := func(id string, draining bool) bool {
			t.Helper()
			got, err := e.s.BeatWorker(ctx, store.Beat{WorkerID: id, FreeSlots: 2, Draining: draining, LeaderTTL: time.Minute})
			if err != nil || !got.Found {
				t.Fatalf("beat of %s: %+v, %v", id, got, err)
			}
			if got.Work {
				t.Fatalf("beat of %s says work is due in an empty queue", id)
			}
			return got.Leader
		}
		leads := func(want string) {
			t.Helper()
			got, err := e.s.Leader(ctx)
			if err != nil || got != want {
				t.Fatalf("leader = %q, %v; want %q", got, err, want)
			}
			rows, err := e.s.Workers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.Leader != (r.WorkerID == want) {
					t.Errorf("workers row %s: leader %v, want %v", r.WorkerID, r.Leader, r.WorkerID == want)
				}
			}
		}
		if !beat("a", false) || beat("b", false) || !beat("a", false) {
			t.Fatal("want a to take the leadership first and keep it, b not")
		}
		leads("a")

		// a killed: its leadership expires; b takes it at its next beat.
		e.exec(t, `UPDATE ade_worker_leader SET expires_at = ?`, e.ts(time.Now().Add(-time.Second)))
		if vacant, err := e.s.LeaderVacant(ctx); err != nil || !vacant {
			t.Fatalf("LeaderVacant after expiry = %v, %v; want true", vacant, err)
		}
		if !beat("b", false) || beat("a", false) {
			t.Fatal("want b to lead once a's leadership expired, and a to see it")
		}
		leads("b")

		// The clock stepped back an hour: b's leadership ends an hour
		// and a minute ahead, more than one TTL: stale.
		e.exec(t, `UPDATE ade_worker_leader SET expires_at = ?`, e.ts(time.Now().Add(time.Hour+time.Minute)))
		if !beat("a", false) {
			t.Fatal("a leadership more than one TTL ahead must count as stale")
		}
		leads("a")

		// A clean stop: a steps down, b takes over at once.
		if err := e.s.StepDown(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		leads("")
		if !beat("b", false) {
			t.Fatal("b must lead after a stepped down")
		}
		// Draining: b gives it up in its beat and never takes it again.
		if beat("b", true) {
			t.Fatal("a draining supervisor must not lead")
		}
		leads("")
		if beat("b", true) || !beat("a", false) {
			t.Fatal("want a to lead, not the draining b")
		}
		w, err := e.s.Worker(ctx, "b")
		if err != nil || !w.Draining {
			t.Fatalf("b's row = %+v, %v; want draining", w, err)
		}
	})
}

// TestLeaderKeptAgainstAnOlderBeat (PostgreSQL):
//   - a beat that finds a live leader does not touch the leader row (no
//     lock to wait for: the beats of a big fleet would queue on it);
//   - a beat's now() is when its statement began. A beat that began
//     before the leader's latest beat and waited for the leader row must
//     not find the leader's fresh expiry "more than one TTL ahead" of
//     that older now and take the leadership (two leaders at once: seen
//     in TestLeaderHandOverOnKill when two beats met). The leader's row
//     has just expired there, so the other beat goes for the row.
func TestLeaderKeptAgainstAnOlderBeat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "postgres")
	ctx := context.Background()
	const ttl = 3 * time.Second
	for _, id := range []string{"a", "b"} {
		if err := e.s.RegisterWorker(ctx, store.WorkerInfo{WorkerID: id, Host: "h", PID: 1, Version: "v", Concurrency: 2, Lease: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	beat := func(ctx context.Context, id string) (store.BeatResult, error) {
		return e.s.BeatWorker(ctx, store.Beat{WorkerID: id, FreeSlots: 2, LeaderTTL: ttl})
	}
	if got, err := beat(ctx, "a"); err != nil || !got.Leader {
		t.Fatalf("a's first beat = %+v, %v; want the leadership", got, err)
	}
	// With a live leader in sight, b's beat leaves the row alone: it
	// neither waits for nor takes the row's lock.
	aHolds := e.s.TestDB().Begin()
	if err := aHolds.Exec(`SELECT 1 FROM ade_worker_leader FOR UPDATE`).Error; err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	got, err := beat(short, "b")
	cancel()
	aHolds.Rollback()
	if err != nil || got.Leader {
		t.Fatalf("b's beat while a's row is locked = %+v, %v; want done at once, not leading", got, err)
	}

	// a's late beat stands in for the transaction holding the row.
	e.exec(t, `UPDATE ade_worker_leader SET expires_at = ?`, e.ts(time.Now().Add(-time.Second)))
	aBeat := e.s.TestDB().Begin()
	defer aBeat.Rollback()
	if err := aBeat.Exec(`UPDATE ade_worker_leader SET expires_at = expires_at WHERE worker_id = 'a'`).Error; err != nil {
		t.Fatal(err)
	}
	var aXact string
	if err := aBeat.Raw(`SELECT pg_current_xact_id()::text`).Scan(&aXact).Error; err != nil {
		t.Fatal(err)
	}
	type result struct {
		got store.BeatResult
		err error
	}
	bDone := make(chan result, 1)
	go func() {
		got, err := beat(ctx, "b")
		bDone <- result{got, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var n int
		// A statement waiting for a row waits for the transaction that holds it.
		e.scan(t, &n, `SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted
			AND transactionid::text = ?`, aXact)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's beat never waited for the leader row")
		}
	}
	// b's statement began before now: a's beat writes a later expiry.
	if err := aBeat.Exec(`UPDATE ade_worker_leader SET expires_at = ? WHERE worker_id = 'a'`, e.ts(time.Now().Add(ttl))).Error; err != nil {
		t.Fatal(err)
	}
	if err := aBeat.Commit().Error; err != nil {
		t.Fatal(err)
	}
	r := <-bDone
	if r.err != nil || r.got.Leader {
		t.Fatalf("b's beat = %+v, %v; want it to leave a the leadership", r.got, r.err)
	}
	if got, err := e.s.Leader(ctx); err != nil || got != "a" {
		t.Fatalf("leader = %q, %v; want a", got, err)
	}
}

// newTriggerEnv is a PostgreSQL env with a database of its own, for a test
// that counts wake-ups: a wake-up for all goes to every listener of the
// database, and other tests queue runs with no supervisor.
func newTriggerEnv(t *testing.T) *env { return newOwnEnv(t, "postgres") }

// TestTriggerWakesOneSupervisor: on PostgreSQL a queued run's notification
// goes to the one live supervisor with free slots the trigger chooses (its
// own channel), not to every supervisor; with none advertising a free slot
// it goes to all. A claim advertises the slots left.
func TestTriggerWakesOneSupervisor(t *testing.T) {
	t.Parallel()
	e := newTriggerEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	e.beatingWorker(t, "full", 0)
	e.beatingWorker(t, "free", 2)
	type wake struct{ who, how string }
	wakes := make(chan wake, 100)
	listening := make(chan string, 2)
	for _, id := range []string{"full", "free"} {
		go e.s.WatchFleet(ctx, store.Watch{WorkerID: id,
			Wake:     func() { wakes <- wake{id, "all"} },
			Directed: func() { wakes <- wake{id, "alone"} },
			Cancelled: func(r store.JobRef) {
				if r == (store.JobRef{}) {
					listening <- id // said once on connecting
				}
			}}, func(err error) { t.Errorf("watch: %v", err) })
	}
	for range 2 {
		<-listening
	}
	drain := func() {
		for {
			select {
			case <-wakes:
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}
	drain() // the wake each watcher sends itself on connecting
	e.run(t, "", time.Now(), time.Now())
	if b, err := e.s.BeatWorker(ctx, store.Beat{WorkerID: "free", FreeSlots: 2, LeaderTTL: time.Minute}); err != nil || !b.Work {
		t.Fatalf("beat with a run queued = %+v, %v; want work due", b, err)
	}
	got := <-wakes
	if got != (wake{"free", "alone"}) {
		t.Fatalf("first wake-up = %+v, want the supervisor with free slots woken alone", got)
	}
	select {
	case more := <-wakes:
		t.Fatalf("another wake-up %+v: want one supervisor woken per queued run", more)
	case <-time.After(300 * time.Millisecond):
	}

	// The claim takes the run and advertises one slot left; then it takes
	// none and advertises 0 for a limit of 0 (a full supervisor).
	if _, runs, err := e.s.ClaimJobs(ctx, "free", time.Minute, 2, 2); err != nil || len(runs) != 1 {
		t.Fatalf("claim = %d runs, %v; want 1", len(runs), err)
	}
	var free []int
	e.scan(t, &free, `SELECT free_slots FROM ade_worker_supervisors WHERE worker_id = 'free'`)
	if len(free) != 1 || free[0] != 1 {
		t.Fatalf("free_slots after claiming 1 of 2 = %v, want 1", free)
	}
	if _, _, err := e.s.ClaimJobs(ctx, "free", time.Minute, 0, 0); err != nil {
		t.Fatal(err)
	}
	e.scan(t, &free, `SELECT free_slots FROM ade_worker_supervisors WHERE worker_id = 'free'`)
	if free[0] != 0 {
		t.Fatalf("free_slots = %v, want 0", free)
	}
	drain()
	// Passed on by "full": the one other supervisor with free slots.
	e.exec(t, `UPDATE ade_worker_supervisors SET free_slots = 2 WHERE worker_id = 'free'`)
	if err := e.s.PassOn(ctx, "full"); err != nil {
		t.Fatal(err)
	}
	if got := <-wakes; got != (wake{"free", "alone"}) {
		t.Fatalf("wake-up passed on = %+v, want the supervisor with free slots woken alone", got)
	}
	e.exec(t, `UPDATE ade_worker_supervisors SET free_slots = 0 WHERE worker_id = 'free'`)
	drain()
	e.run(t, "", time.Now(), time.Now())
	seen := map[wake]bool{}
	for len(seen) < 2 {
		select {
		case w := <-wakes:
			seen[w] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("with no free slot advertised, woken: %v; want both supervisors woken", seen)
		}
	}
	if !seen[wake{"full", "all"}] || !seen[wake{"free", "all"}] {
		t.Fatalf("woken: %v; want both on the broadcast channel", seen)
	}
}

// TestClaimSkipsUnchangedFreeSlots: a claim writes the supervisor's free
// slots only when the figure differs from the one this process last wrote
// (a busy supervisor's claims nearly always find it unchanged); a figure
// another program changed meanwhile is put right by the next beat.
func TestClaimSkipsUnchangedFreeSlots(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "postgres")
	ctx := context.Background()
	free := func() int {
		t.Helper()
		var got []int
		e.scan(t, &got, `SELECT free_slots FROM ade_worker_supervisors WHERE worker_id = 'w'`)
		if len(got) != 1 {
			t.Fatalf("supervisor rows: %v", got)
		}
		return got[0]
	}
	claim := func(limit int) {
		t.Helper()
		if _, _, err := e.s.ClaimJobs(ctx, "w", time.Minute, limit, limit); err != nil {
			t.Fatal(err)
		}
	}
	e.beatingWorker(t, "w", 2)
	// Stale on purpose: a claim that finds the 2 it last wrote skips the
	// write, so the 5 stays.
	e.exec(t, `UPDATE ade_worker_supervisors SET free_slots = 5 WHERE worker_id = 'w'`)
	claim(2)
	if got := free(); got != 5 {
		t.Fatalf("free_slots after a claim left 2 free again = %d, want the write skipped (5 kept)", got)
	}
	claim(1)
	if got := free(); got != 1 {
		t.Fatalf("free_slots after a claim left 1 free = %d, want 1", got)
	}
	e.exec(t, `UPDATE ade_worker_supervisors SET free_slots = 5 WHERE worker_id = 'w'`)
	if _, err := e.s.BeatWorker(ctx, store.Beat{WorkerID: "w", FreeSlots: 1, LeaderTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if got := free(); got != 1 {
		t.Fatalf("free_slots after a beat = %d, want 1", got)
	}
	claim(0)
	if got := free(); got != 0 {
		t.Fatalf("free_slots after a claim left none free = %d, want 0", got)
	}
}

// TestTriggerSkipsSupervisorWithoutConnection: a supervisor killed since
// its last beat keeps a fresh row with free slots for up to a lease; the
// trigger wakes a connected one instead, so no queued run's wake-up is
// lost to it. Of 24 runs, about half would rank the dead one first.
func TestTriggerSkipsSupervisorWithoutConnection(t *testing.T) {
	t.Parallel()
	e := newTriggerEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for _, id := range []string{"dead", "alive"} {
		e.beatingWorker(t, id, 2)
	}
	wakes, listening := make(chan string, 100), make(chan struct{}, 1)
	go e.s.WatchFleet(ctx, store.Watch{WorkerID: "alive",
		Wake:     func() { wakes <- "all" },
		Directed: func() { wakes <- "alone" },
		Cancelled: func(r store.JobRef) {
			if r == (store.JobRef{}) {
				listening <- struct{}{}
			}
		}}, func(err error) { t.Errorf("watch: %v", err) })
	<-listening
	// The wake-ups the watcher sends itself on connecting and on listening.
	for range 2 {
		if how := <-wakes; how != "all" {
			t.Fatalf("first wake-ups %q, want the ones on connecting and listening", how)
		}
	}
	const runs = 24
	for range runs {
		e.run(t, "", time.Now(), time.Now())
	}
	for i := 0; i < runs; i++ {
		select {
		case how := <-wakes:
			if how != "alone" {
				t.Fatalf("wake-up %d came on the broadcast channel; want the connected supervisor woken alone", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d queued runs woke the connected supervisor; the rest went to the dead one", i, runs)
		}
	}
}

// TestTriggerSkipsSupervisorThatDoesNotListen: a supervisor off duty
// keeps its connection but does not listen; the trigger wakes one that
// listens, and the other hears nothing.
func TestTriggerSkipsSupervisorThatDoesNotListen(t *testing.T) {
	t.Parallel()
	e := newTriggerEnv(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for _, id := range []string{"duty-off", "duty-on"} {
		e.beatingWorker(t, id, 2)
	}
	type heard struct{ who, how string }
	wakes := make(chan heard, 100)
	ready := make(chan string, 2)
	watch := func(id string, listen bool) {
		connected := false
		go e.s.WatchFleet(ctx, store.Watch{WorkerID: id,
			Listen: func() bool { return listen },
			Wake: func() {
				if !connected { // the wake-up it sends itself on connecting
					connected = true
					ready <- id
					return
				}
				wakes <- heard{id, "all"}
			},
			Directed:  func() { wakes <- heard{id, "alone"} },
			Cancelled: func(store.JobRef) {}}, func(err error) { t.Errorf("watch %s: %v", id, err) })
	}
	watch("duty-off", false)
	watch("duty-on", true)
	<-ready
	<-ready
	if got := <-wakes; got != (heard{"duty-on", "all"}) { // on listening
		t.Fatalf("first wake-up %+v, want the listener's own on listening", got)
	}
	listeners := func() []string {
		var ids []string
		if err := e.s.TestDB().Raw(`SELECT application_name FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN %' AND application_name IN (?, ?) ORDER BY 1`,
			store.AppName("duty-on"), store.AppName("duty-off")).Scan(&ids).Error; err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := listeners(); len(got) != 1 || got[0] != store.AppName("duty-on") {
		t.Fatalf("listening sessions %v, want only %q", got, store.AppName("duty-on"))
	}
	const runs = 12
	for range runs {
		e.run(t, "", time.Now(), time.Now())
	}
	for i := range runs {
		select {
		case got := <-wakes:
			if got != (heard{"duty-on", "alone"}) {
				t.Fatalf("wake-up %d: %+v, want the listening supervisor woken alone", i, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d queued runs woke the listening supervisor", i, runs)
		}
	}
	select {
	case got := <-wakes:
		t.Fatalf("an extra wake-up %+v", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// beatingWorker registers supervisor id (concurrency 2, a minute's lease)
// and beats it once, advertising free slots.
func (e *env) beatingWorker(t *testing.T, id string, free int) {
	t.Helper()
	ctx := context.Background()
	if err := e.s.RegisterWorker(ctx, store.WorkerInfo{WorkerID: id, Host: "h", PID: 1, Version: "v", Concurrency: 2, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.BeatWorker(ctx, store.Beat{WorkerID: id, FreeSlots: free, LeaderTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
}

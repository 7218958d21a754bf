package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// fakeQueue is an empty queue that records when the claim loop asks it for
// work. Its answers can be changed while the loop runs.
type fakeQueue struct {
	mu       sync.Mutex
	claims   []claimCall
	claimErr error
	next     time.Duration // NextAvailable answers next when > 0
	pending  int64
	status   store.Status  // JobStatus answers it for every job
	calls    chan struct{} // one token per ClaimJobs call
	// fileGoneAtClaim: the database file vanishes while ClaimJobs runs,
	// which then fails; CheckFile reports it from then on.
	fileGoneAtClaim bool
	fileErr         error
}

type claimCall struct {
	at     time.Time
	worker string
	free   int
}

func newFakeQueue() *fakeQueue { return &fakeQueue{calls: make(chan struct{}, 1000)} }

func (q *fakeQueue) ClaimJobs(_ context.Context, worker string, _ time.Duration, buildLimit, runLimit int) ([]store.ClaimedBuild, []store.ClaimedRun, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.claims = append(q.claims, claimCall{at: time.Now(), worker: worker, free: min(buildLimit, runLimit)})
	q.calls <- struct{}{}
	if q.fileGoneAtClaim {
		q.fileErr = fmt.Errorf("%w: /db/ade.sqlite was deleted", store.ErrDatabaseFileChanged)
		return nil, nil, errors.New("unable to open database file: no such file or directory")
	}
	return nil, nil, q.claimErr
}

func (q *fakeQueue) NextAvailable(context.Context) (time.Duration, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.next, q.next > 0, nil
}

func (q *fakeQueue) PendingJobs(context.Context) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending, nil
}

func (q *fakeQueue) JobStatus(context.Context, store.Kind, string) (store.Status, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.status, nil
}

func (q *fakeQueue) CheckFile() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fileErr
}

func (q *fakeQueue) set(fn func(q *fakeQueue)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fn(q)
}

func (q *fakeQueue) recorded() []claimCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]claimCall(nil), q.claims...)
}

// waitClaims waits until the loop has asked for work n times in all.
func (q *fakeQueue) waitClaims(t *testing.T, n int) []claimCall {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for len(q.recorded()) < n {
		select {
		case <-q.calls:
		case <-deadline:
			t.Fatalf("the claim loop asked for work %d times, want %d", len(q.recorded()), n)
		}
	}
	return q.recorded()
}

// loopSupervisor is a supervisor on q whose claim loop polls every poll,
// backing off to pollMax.
func loopSupervisor(q *fakeQueue, poll, pollMax time.Duration, concurrency int) *Supervisor {
	cfg := &settings.Settings{WorkerID: "w1", Concurrency: concurrency, PollInterval: poll, PollIntervalMax: pollMax}
	s := New(cfg, nil, zerolog.Nop(), "")
	s.queue = q
	return s
}

// runLoop runs the claim loop until the test ends.
func runLoop(t *testing.T, s *Supervisor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.claimLoop(ctx, context.Background()) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestClaimLoopWakesUpAtOnce(t *testing.T) {
	q := newFakeQueue()
	s := loopSupervisor(q, time.Hour, time.Hour, 2)
	runLoop(t, s)
	calls := q.waitClaims(t, 1) // the first look is immediate
	if calls[0].worker != "w1" || calls[0].free != 2 {
		t.Errorf("claim = %+v, want worker w1 asking for 2 jobs", calls[0])
	}
	s.wake() // a notification, an insert seen by inotify, or a job that ended
	q.waitClaims(t, 2)
	s.wake()
	q.waitClaims(t, 3)
}

func TestClaimLoopBacksOffWhenIdle(t *testing.T) {
	q := newFakeQueue()
	poll := 20 * time.Millisecond
	runLoop(t, loopSupervisor(q, poll, time.Hour, 1))
	calls := q.waitClaims(t, 6)
	// Each empty look waits 1.5 times longer than the one before. Timers never
	// fire early, so the gaps are at least that (a slow machine only adds).
	want := poll
	for i := 1; i < 6; i++ {
		want = time.Duration(float64(want) * 1.5)
		if gap := calls[i].at.Sub(calls[i-1].at); gap < want-time.Millisecond {
			t.Errorf("gap before look %d = %s, want at least %s", i+1, gap, want)
		}
	}
}

func TestClaimLoopWakesForJobInBackoff(t *testing.T) {
	q := newFakeQueue()
	q.next = 50 * time.Millisecond // a job in retry backoff becomes available then
	runLoop(t, loopSupervisor(q, time.Hour, time.Hour, 1))
	calls := q.waitClaims(t, 2) // long before the hour of polling
	if gap := calls[1].at.Sub(calls[0].at); gap < 49*time.Millisecond {
		t.Errorf("second look after %s, want it when the job becomes available (50ms)", gap)
	}
}

func TestClaimLoopKeepsGoingThroughClaimErrors(t *testing.T) {
	q := newFakeQueue()
	q.claimErr = errors.New("connection refused")
	runLoop(t, loopSupervisor(q, time.Millisecond, 2*time.Millisecond, 1))
	n := len(q.waitClaims(t, 3))
	q.set(func(q *fakeQueue) { q.claimErr = nil })
	q.waitClaims(t, n+2)
}

// TestClaimLoopFileGoneMidClaim: a claim that fails because the SQLite file
// was deleted after the loop's check is told as the deleted file, in one
// error line, not also as a database outage.
func TestClaimLoopFileGoneMidClaim(t *testing.T) {
	q := newFakeQueue()
	q.fileGoneAtClaim = true
	var buf bytes.Buffer // read once the loop has returned
	s := loopSupervisor(q, time.Millisecond, time.Millisecond, 1)
	s.log = zerolog.New(&buf)
	done := make(chan struct{})
	go func() { defer close(done); s.claimLoop(context.Background(), context.Background()) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the claim loop did not stop after the database file was deleted")
	}
	if !errors.Is(s.Unready(), store.ErrDatabaseFileChanged) {
		t.Errorf("Unready() = %v, want the file change", s.Unready())
	}
	log := buf.String()
	if n := strings.Count(log, `"level":"error"`); n != 1 || !strings.Contains(log, "database file gone") {
		t.Errorf("want one error line, about the deleted file; log:\n%s", log)
	}
}

func TestClaimLoopAsksOnlyForFreeSlots(t *testing.T) {
	q := newFakeQueue()
	s := loopSupervisor(q, time.Millisecond, time.Millisecond, 3)
	for range 3 { // every slot busy
		s.slots <- struct{}{}
	}
	runLoop(t, s)
	<-s.slots // one job ends
	s.wake()
	calls := q.waitClaims(t, 1)
	if calls[0].free != 1 {
		t.Errorf("first claim asked for %d jobs, want 1 (never one while every slot was busy)", calls[0].free)
	}
}

func TestClaimLoopExitsWhenIdle(t *testing.T) {
	q := newFakeQueue()
	q.pending = 1 // queued or running elsewhere: keep looking
	s := loopSupervisor(q, time.Millisecond, time.Millisecond, 1)
	s.ExitWhenIdle = true
	done := make(chan struct{})
	go func() { defer close(done); s.claimLoop(context.Background(), context.Background()) }()
	q.waitClaims(t, 3)
	select {
	case <-done:
		t.Fatal("the loop exited while a job was pending")
	default:
	}
	q.set(func(q *fakeQueue) { q.pending = 0 })
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the loop did not exit once nothing was pending")
	}
}

func TestUntilNextAvailable(t *testing.T) {
	sleep := time.Second
	cases := []struct {
		name string
		next time.Duration // 0: nothing in backoff
		want func(time.Duration) bool
	}{
		{"nothing waiting: the idle sleep", 0, func(d time.Duration) bool { return d == sleep }},
		{"a job due sooner shortens the sleep", 100 * time.Millisecond, func(d time.Duration) bool { return d > 0 && d <= 100*time.Millisecond }},
		{"a job due later leaves it", time.Hour, func(d time.Duration) bool { return d == sleep }},
		{"a time in the past never makes it spin", -time.Second, func(d time.Duration) bool { return d == sleep }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := newFakeQueue()
			q.next = tc.next
			s := loopSupervisor(q, time.Millisecond, time.Millisecond, 1)
			if tc.next < 0 {
				s.queue = pastQueue{q}
			}
			if got := s.untilNextAvailable(context.Background(), sleep); !tc.want(got) {
				t.Errorf("untilNextAvailable = %s", got)
			}
		})
	}
}

// pastQueue answers NextAvailable with a time that has passed.
type pastQueue struct{ *fakeQueue }

func (pastQueue) NextAvailable(context.Context) (time.Duration, bool, error) {
	return -time.Second, true, nil
}

// TestClaimLoopWithWakeupsClaimsOnlyWhenTold: with instant wake-ups on, a
// job that ends while no work is known to wait claims nothing (every new
// job notifies), and a wake-up claims at once.
func TestClaimLoopWithWakeupsClaimsOnlyWhenTold(t *testing.T) {
	q := newFakeQueue()
	s := loopSupervisor(q, time.Millisecond, 2*time.Millisecond, 2)
	s.fleet.wakeupsOn.Store(true)
	runLoop(t, s)
	q.waitClaims(t, 1) // the first look finds nothing
	// Two jobs end, one after the other: once the loop took the second,
	// it has finished whatever it did for the first.
	for range 2 {
		s.freed <- struct{}{}
		waitUntil(t, "the loop to take the job's end", func() bool { return len(s.freed) == 0 })
	}
	woken := time.Now()
	s.wake()
	calls := q.waitClaims(t, 2)
	if calls[1].at.Before(woken) {
		t.Errorf("the loop claimed at %s, before the wake-up at %s: a job's end with nothing waiting must not claim", calls[1].at, woken)
	}
}

// waitUntil polls cond until it holds (20 s at most).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestClaimLoopUnderCapClaimsOnJobEnd: under a workspace cap, runs held
// back by it become claimable when a run of their workspace ends, which
// notifies nobody; the end of a job must look again (without it, capped
// runs waited for the safety poll: 5x slower end to end).
func TestClaimLoopUnderCapClaimsOnJobEnd(t *testing.T) {
	q := newFakeQueue()
	s := loopSupervisor(q, time.Hour, time.Hour, 2)
	s.cfg.WorkspaceMaxRunning = 2
	s.fleet.wakeupsOn.Store(true)
	runLoop(t, s)
	q.waitClaims(t, 1) // the first look finds nothing
	s.freed <- struct{}{}
	q.waitClaims(t, 2)
}

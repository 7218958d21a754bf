package store_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// cancelRow is what a cancel writes on a run.
type cancelRow struct {
	Status         string
	CancelledAt    store.Time
	CompletedAt    store.Time
	ClaimedBy      *string
	ClaimExpiresAt store.Time
}

func (e *env) cancelRow(t *testing.T, id string) cancelRow {
	t.Helper()
	var r cancelRow
	e.scan(t, &r, `SELECT status, cancelled_at, completed_at, claimed_by, claim_expires_at FROM runs WHERE id = ?`, id)
	return r
}

func TestCancelQueuedRunIsNeverClaimed(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		run := e.run(t, "", t0.Add(-time.Hour), t0.Add(-time.Minute))
		was, err := e.s.CancelJob(ctx, store.KindRun, run)
		if err != nil || was != "queued" {
			t.Fatalf("CancelJob = %q, %v; want it cancelled from queued", was, err)
		}
		r := e.cancelRow(t, run)
		if r.Status != "cancelled" || r.ClaimedBy != nil || r.ClaimExpiresAt.Valid {
			t.Errorf("cancelled run = %+v, want cancelled without a claim", r)
		}
		nearNow(t, "cancelled_at", r.CancelledAt, 0)
		nearNow(t, "completed_at", r.CompletedAt, 0)
		claimed, err := e.s.ClaimRuns(ctx, "w1", time.Minute, 10)
		if err != nil || len(claimed) != 0 {
			t.Errorf("claim after the cancel = %v, %v; want nothing", claimed, err)
		}
		build := e.build(t, "queued")
		if _, err := e.s.CancelJob(ctx, store.KindBuild, build); err != nil {
			t.Fatal(err)
		}
		if b := e.buildRow(t, build); b.Status != "cancelled" || !b.FinishedAt.Valid || b.ClaimedBy.Valid {
			t.Errorf("cancelled build = %+v, want cancelled with finished_at, no claim", b)
		}
		builds, err := e.s.ClaimBuilds(ctx, "w1", time.Minute, 10)
		if err != nil || len(builds) != 0 {
			t.Errorf("build claim after the cancel = %v, %v; want nothing", builds, err)
		}
	})
}

// TestCancelRunningJobFencesTheWorker: after a cancel every fenced write of
// the worker that held the job fails and changes nothing.
func TestCancelRunningJobFencesTheWorker(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		doc := e.doc(t)
		run := e.runFor(t, doc, "", t0.Add(-time.Hour), t0.Add(-time.Minute))
		f := claimAndStart(t, e, run, doc)
		if was, err := e.s.CancelJob(ctx, store.KindRun, run); err != nil || was != "running" {
			t.Fatalf("CancelJob = %q, %v; want cancelled from running", was, err)
		}
		before, docBefore := e.cancelRow(t, run), e.docRow(t, doc)
		writes := map[string]func() error{
			"heartbeat": func() error { return e.s.Heartbeat(ctx, f, time.Hour) },
			"finish": func() error {
				return e.s.FinishRun(ctx, f, store.RunOutcome{Succeeded: true, ExitCode: ptr(0), Summary: testSummary("x"), DocumentID: doc})
			},
			"requeue":  func() error { return e.s.Requeue(ctx, f, 0, "retry") },
			"document": func() error { return e.s.StartDocument(ctx, f, doc) },
		}
		for name, write := range writes {
			if err := write(); !errors.Is(err, store.ErrLeaseLost) {
				t.Errorf("%s after the cancel: %v, want ErrLeaseLost", name, err)
			}
		}
		if after := e.cancelRow(t, run); after != before {
			t.Errorf("run changed after the cancel:\nbefore %+v\nafter  %+v", before, after)
		}
		if d := e.docRow(t, doc); d != docBefore || d.Status != "processing" {
			t.Errorf("document = %+v, want untouched %+v", d, docBefore)
		}
		if r := e.results(t, run); len(r.Metrics)+len(r.Fields)+len(r.Columns) != 0 {
			t.Errorf("results of a cancelled run: %+v", r)
		}
	})
}

func TestCancelRefusesFinishedAndUnknownJobs(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, status := range []store.Status{store.StatusSucceeded, store.StatusFailed, store.StatusCancelled} {
			run := e.run(t, "", t0, t0)
			e.exec(t, `UPDATE runs SET status = ? WHERE id = ?`, status, run)
			was, err := e.s.CancelJob(ctx, store.KindRun, run)
			if !errors.Is(err, store.ErrNotCancellable) || was != status {
				t.Errorf("cancel a %s run: %q, %v; want ErrNotCancellable", status, was, err)
			}
			if got := e.runRow(t, run).Status; got != status {
				t.Errorf("refused cancel changed the status to %s", got)
			}
		}
		for _, status := range []string{"ready", "failed"} {
			build := e.build(t, status)
			if _, err := e.s.CancelJob(ctx, store.KindBuild, build); !errors.Is(err, store.ErrNotCancellable) {
				t.Errorf("cancel a %s build: %v, want ErrNotCancellable", status, err)
			}
		}
		if _, err := e.s.CancelJob(ctx, store.KindRun, store.NewID()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("cancel an unknown run: %v, want ErrNotFound", err)
		}
	})
}

func TestCancelledLooksUpOnlyTheGivenJobs(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		gone, live, other := e.run(t, "", t0, t0), e.run(t, "", t0, t0), e.run(t, "", t0, t0)
		goneBuild, liveBuild := e.build(t, "building"), e.build(t, "building")
		for _, j := range []store.JobRef{{Kind: store.KindRun, ID: gone}, {Kind: store.KindRun, ID: other}, {Kind: store.KindBuild, ID: goneBuild}} {
			if _, err := e.s.CancelJob(ctx, j.Kind, j.ID); err != nil {
				t.Fatal(err)
			}
		}
		got, err := e.s.Cancelled(ctx, []store.JobRef{{Kind: store.KindRun, ID: gone}, {Kind: store.KindRun, ID: live},
			{Kind: store.KindBuild, ID: goneBuild}, {Kind: store.KindBuild, ID: liveBuild}, {Kind: store.KindRun, ID: store.NewID()}})
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Kind > got[j].Kind })
		want := []store.JobRef{{Kind: store.KindRun, ID: gone}, {Kind: store.KindBuild, ID: goneBuild}}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("Cancelled = %+v, want %+v (not the cancelled run that was not asked about)", got, want)
		}
		if none, err := e.s.Cancelled(ctx, nil); err != nil || len(none) != 0 {
			t.Errorf("Cancelled(nil) = %v, %v", none, err)
		}
	})
}

// TestCancelRacesFinishRun: a cancel and a worker's final write at the same
// instant; each run ends wholly in one of the two states, never a mix.
func TestCancelRacesFinishRun(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		wins := map[store.Status]int{}
		for i := 0; i < 40; i++ {
			doc := e.doc(t)
			run := e.runFor(t, doc, "", t0.Add(-time.Hour), t0.Add(-time.Minute))
			f := claimAndStart(t, e, run, doc)
			var finishErr, cancelErr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				finishErr = e.s.FinishRun(ctx, f, store.RunOutcome{Succeeded: true, ExitCode: ptr(0), Summary: testSummary("r"), DocumentID: doc})
			}()
			go func() {
				defer wg.Done()
				<-start
				_, cancelErr = e.s.CancelJob(ctx, store.KindRun, run)
			}()
			close(start)
			wg.Wait()
			status, res, d := e.runRow(t, run).Status, e.results(t, run), e.docRow(t, doc)
			switch {
			case finishErr == nil && errors.Is(cancelErr, store.ErrNotCancellable):
				if status != "succeeded" || len(res.Metrics) != 1 || len(res.Fields) == 0 || d.Status != "processed" {
					t.Fatalf("finish won but run %s is %s, results %+v, document %s", run, status, res, d.Status)
				}
			case errors.Is(finishErr, store.ErrLeaseLost) && cancelErr == nil:
				if status != "cancelled" || len(res.Metrics)+len(res.Fields)+len(res.Columns) != 0 || d.Status != "processing" {
					t.Fatalf("cancel won but run %s is %s, results %+v, document %s", run, status, res, d.Status)
				}
			default:
				t.Fatalf("finish: %v, cancel: %v; want exactly one to win", finishErr, cancelErr)
			}
			wins[status]++
		}
		t.Logf("wins: %v", wins)
	})
}

// TestWatchQueueReportsCancels: PostgreSQL names the cancelled job at once
// (trigger + NOTIFY); SQLite reports that some job may have been cancelled
// whenever another connection writes.
func TestWatchQueueReportsCancels(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx, stop := context.WithCancel(context.Background())
		seen := make(chan store.JobRef, 100)
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.s.WatchQueue(ctx, func() {}, func(r store.JobRef) { seen <- r }, func(err error) { t.Errorf("watch: %v", err) })
		}()
		defer func() { stop(); <-done }()
		other := pgtemp.Open(t, e.url)
		run, build := e.run(t, "", t0, t0), e.build(t, "building")
		want := map[store.JobRef]bool{{Kind: store.KindRun, ID: run}: true, {Kind: store.KindBuild, ID: build}: true}
		deadline := time.After(30 * time.Second)
		for len(want) > 0 {
			// Cancel again until seen: the watcher may not listen yet.
			for ref := range want {
				other.TestDB().Exec(`UPDATE `+map[store.Kind]string{store.KindRun: "runs", store.KindBuild: "builds"}[ref.Kind]+
					` SET status = 'queued' WHERE id = ?`, ref.ID)
				if _, err := other.CancelJob(ctx, ref.Kind, ref.ID); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case r := <-seen:
				if r == (store.JobRef{}) {
					if e.backend == "sqlite" {
						return // SQLite cannot say which job; PostgreSQL says this on connecting
					}
					continue
				}
				delete(want, r)
			case <-deadline:
				t.Fatalf("no cancel reported for %v", want)
			case <-time.After(time.Second):
			}
		}
	})
}

// TestSQLiteWriteToldAgain: a write to the SQLite file wakes the watcher at
// once and once more after it settled: inotify sees the commit's last frame
// a moment before the writer publishes the commit to readers, so a claim
// made at the first wake-up alone could miss the job and wait for the next
// beat (seen in TestKilledSupervisorDelaysNoPickup).
func TestSQLiteWriteToldAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "sqlite")
	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	var wakes []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.s.WatchQueue(ctx, func() {
			mu.Lock()
			wakes = append(wakes, time.Now())
			mu.Unlock()
		}, func(store.JobRef) {}, func(err error) { t.Errorf("watch: %v", err) })
	}()
	defer func() { stop(); <-done }()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(wakes)
	}
	// The watcher is ready once a write wakes it; then all is quiet.
	for deadline := time.Now().Add(10 * time.Second); count() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no wake-up for a write")
		}
		e.doc(t)
	}
	time.Sleep(300 * time.Millisecond) // past every wake-up of those writes
	before := count()
	e.runFor(t, store.NewID(), "", t0, t0)
	written := time.Now()
	time.Sleep(300 * time.Millisecond) // the settle delay is 50 ms
	mu.Lock()
	defer mu.Unlock()
	var atOnce, later bool
	for _, at := range wakes[before:] {
		atOnce = atOnce || at.Sub(written) < 30*time.Millisecond
		later = later || at.Sub(written) >= 30*time.Millisecond
	}
	if !atOnce || !later {
		t.Errorf("wake-ups after the write at %v: %v; want one at once and one after it settled", written, wakes[before:])
	}
}

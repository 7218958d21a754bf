package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The fleet's maintenance (rescue of expired leases, cleanup, the queue
// gauges) is done by one elected supervisor: these tests start real
// supervisors and read their logs and `supervisor workers`.

// startAs starts a supervisor with the given id and waits until it runs.
func (w *world) startAs(id string) int {
	w.t.Helper()
	w.env["ADE_WORKER_ID"] = id
	w.startAndWaitForStartedLine()
	return len(w.sups) - 1
}

// leaderOf is the id `supervisor workers` marks as leader ("" for none),
// failing the test when it marks more than one.
func (w *world) leaderOf() string {
	w.t.Helper()
	leader := ""
	for id, r := range w.workers() {
		if r.Leader {
			if leader != "" {
				w.t.Fatalf("two leaders at once: %s and %s", leader, id)
			}
			leader = id
		}
	}
	return leader
}

// queueLines counts the `queue` gauge lines in supervisor i's log.
func (w *world) queueLines(i int) int {
	n := 0
	for _, line := range strings.Split(ansi.ReplaceAllString(w.supervisorLog(i), ""), "\n") {
		if strings.Contains(line, "INF queue ") && strings.Contains(line, "running_here=") {
			n++
		}
	}
	return n
}

// TestLeaderHandOverOnKill: of three supervisors only the first leads and
// logs the queue gauges; SIGKILLed while it runs a job, exactly one of the
// others becomes leader within about a lease and a third, rescues that job
// (no other supervisor does), and takes the gauges over.
func TestLeaderHandOverOnKill(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		const lease = 3 * time.Second
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "3",
			"ADE_WORKER_METRICS_INTERVAL": "0.3", "ADE_WORKER_ID": "sup-a"})
		first := 0 // readyWorld started it
		w.waitForLogLine(first, "became leader", 30*time.Second)
		run := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=60")))
		w.waitEngine(run)
		others := []int{w.startAs("sup-b"), w.startAs("sup-c")}
		waitUntil(t, 30*time.Second, "the leader's queue gauges", func() bool { return w.queueLines(first) >= 3 })
		if got := w.leaderOf(); got != "sup-a" {
			t.Fatalf("workers shows leader %q, want sup-a", got)
		}
		for _, i := range others {
			if n := w.queueLines(i); n != 0 || strings.Contains(w.supervisorLog(i), "became leader") {
				t.Errorf("supervisor %d is not the leader but logged %d queue lines or became leader:\n%s", i, n, w.supervisorLog(i))
			}
		}

		kill(t, w.sups[first])
		killed := time.Now()
		var next int
		waitUntil(t, 30*time.Second, "another supervisor to become leader", func() bool {
			for _, i := range others {
				if strings.Contains(w.supervisorLog(i), "became leader") {
					next = i
					return true
				}
			}
			return false
		})
		took := time.Since(killed)
		t.Logf("leader replaced %s after the kill", took.Round(time.Millisecond))
		if bound := lease + lease/3 + 2*time.Second; took > bound {
			t.Errorf("leader replaced %s after the kill, want within %s (its lease, a beat, slack)", took, bound)
		}
		before := w.queueLines(next)
		waitUntil(t, 30*time.Second, "the new leader's queue gauges", func() bool { return w.queueLines(next) >= before+2 })
		for _, i := range others {
			if i != next && strings.Contains(w.supervisorLog(i), "became leader") {
				t.Errorf("two supervisors became leader after the kill:\n%s", w.supervisorLog(i))
			}
		}
		if got, want := w.leaderOf(), map[int]string{others[0]: "sup-b", others[1]: "sup-c"}[next]; got != want {
			t.Errorf("workers shows leader %q, want %q", got, want)
		}
		// The killed leader's run: rescued by the new leader alone.
		w.waitForLogLine(next, "cleanup recovered jobs", 30*time.Second)
		waitUntil(t, 30*time.Second, "the run's second attempt", func() bool { return w.job("runs", run).AttemptCount == 2 })
		for _, i := range others {
			if i != next && strings.Contains(w.supervisorLog(i), "cleanup recovered jobs") {
				t.Errorf("supervisor %d is not the leader but rescued jobs:\n%s", i, w.supervisorLog(i))
			}
		}
	})
}

// TestLeaderHandOverOnCleanStop: a leader stopped cleanly gives the
// leadership up at once and another supervisor takes it within a second or
// two, not after the lease (30 s here, beats every 10 s).
func TestLeaderHandOverOnCleanStop(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "30"})
		first := w.startAs("sup-a")
		w.waitForLogLine(first, "became leader", 30*time.Second)
		second := w.startAs("sup-b")
		w.stop(w.sups[first])
		stopped := time.Now()
		if !strings.Contains(w.supervisorLog(first), "gave up leadership") {
			t.Errorf("the stopped leader did not log giving up the leadership:\n%s", w.supervisorLog(first))
		}
		w.waitForLogLine(second, "became leader", 20*time.Second)
		took := time.Since(stopped)
		t.Logf("leader replaced %s after the clean stop", took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("leader replaced %s after the clean stop, want within 3 s (not at the next beat, 10 s)", took)
		}
		if got := w.leaderOf(); got != "sup-b" {
			t.Errorf("workers shows leader %q, want sup-b", got)
		}
	})
}

// TestKilledSupervisorDelaysNoPickup: a supervisor killed with SIGKILL
// keeps its row, fresh and with free slots, for up to a lease, and the
// queue's trigger would keep sending it wake-ups that nobody hears; each
// such run would wait for another supervisor's beat (every lease / 3, 5 s
// with the default lease). Every run queued after the kill must start
// within the poll interval (ADE_WORKER_POLL_INTERVAL_MAX, 2 s) instead.
func TestKilledSupervisorDelaysNoPickup(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "15", "ADE_WORKER_ID": "sup-a"})
		w.startAs("sup-b")
		if backend == "postgres" {
			waitUntil(t, 30*time.Second, "both supervisors to advertise free slots", func() bool {
				var n []int64
				w.query(&n, `SELECT count(*) FROM ade_worker_supervisors WHERE free_slots > 0`)
				return len(n) == 1 && n[0] == 2
			})
		}
		kill(t, w.sups[0])
		const runs, bound = 12, 2 * time.Second
		for i := range runs {
			doc := w.addDocument(fmt.Sprintf("after-kill-%d.csv", i), csv())
			queued := time.Now()
			run := w.addRun(cfg, doc)
			waitUntil(t, 30*time.Second, "the run to start", func() bool { return w.job("runs", run).Status != "queued" })
			if took := time.Since(queued); took > bound {
				t.Errorf("run %d started %s after it was queued, want within %s: its wake-up went to the killed supervisor", i, took.Round(time.Millisecond), bound)
			}
			w.waitForStatus("runs", []string{run}, time.Minute)
		}
	})
}

// TestIdleListenersOnDuty: PostgreSQL signals every listening session for
// each NOTIFY, so only ADE_WORKER_IDLE_LISTENERS idle supervisors listen.
// With it at 1, of three idle supervisors exactly the one first by
// md5(worker_id) listens, and runs queued one at a time start well within a
// beat. Runs beyond its free slots are found by the others at their beat;
// each supervisor listens while it runs a job, so every cancel is heard by
// notification; and with the runs gone, one listens again.
func TestIdleListenersOnDuty(t *testing.T) {
	t.Parallel()
	ids := []string{"duty-a", "duty-b", "duty-c"}
	// A beat every 20 s: a wake-up sent to no one that listens would leave
	// the run to the first of three beats, seconds later.
	w, cfg, _ := readyWorld(t, "postgres", map[string]string{"ADE_WORKER_IDLE_LISTENERS": "1",
		"ADE_WORKER_CONCURRENCY": "1", "ADE_WORKER_JOB_LEASE_SECONDS": "60", "ADE_WORKER_ID": ids[0]})
	for _, id := range ids[1:] {
		w.startAs(id)
	}
	first := ids[0]
	for _, id := range ids[1:] {
		if hexMD5(id) < hexMD5(first) {
			first = id
		}
	}
	listeners := func() []string {
		var got []string
		w.query(&got, `SELECT substr(application_name, 12) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'ade-worker duty-%' AND query LIKE 'LISTEN %' ORDER BY 1`)
		return got
	}
	onlyFirst := func() bool {
		l := listeners()
		return len(l) == 1 && l[0] == first
	}
	waitUntil(t, time.Minute, "only "+first+" to listen", onlyFirst)

	const bound = 2 * time.Second
	for i := range 5 {
		queued := time.Now()
		run := w.addRun(cfg, w.addDocument(fmt.Sprintf("alone-%d.csv", i), csv()))
		waitUntil(t, 30*time.Second, "the run to start", func() bool { return w.job("runs", run).Status != "queued" })
		took := time.Since(queued)
		if r := w.waitForStatus("runs", []string{run}, time.Minute)[run]; r.Status != "succeeded" || took > bound {
			t.Errorf("run %d: %+v (%s) started %s after it was queued; want succeeded, within %s", i, r, r.errText(), took.Round(time.Millisecond), bound)
		}
	}
	// A supervisor that found a run at its beat listened while it ran it.
	waitUntil(t, 30*time.Second, "only "+first+" to listen once idle", onlyFirst)

	// Three long runs: one each, the others found at their beats.
	var runs []string
	for i := range 3 {
		runs = append(runs, w.addRun(cfg, w.addDocument(fmt.Sprintf("long-%d.csv", i), csv("sleep=60"))))
	}
	for _, run := range runs {
		w.waitEngine(run) // a beat, 20 s, for the last
	}
	holders := map[string]bool{}
	for _, run := range runs {
		if r := w.job("runs", run); r.ClaimedBy != nil {
			holders[*r.ClaimedBy] = true
		}
	}
	if len(holders) != 3 {
		t.Fatalf("three runs at concurrency 1 held by %v, want one each", holders)
	}
	waitUntil(t, 30*time.Second, "all three, running jobs, to listen", func() bool { return len(listeners()) == 3 })
	for _, run := range runs {
		now := w.ts(time.Now())
		w.exec(cancelRunSQL, now, now, run)
	}
	for i := range ids {
		// Each ran one of the runs and heard its cancel.
		w.assertCancelLog(i)
		if log := ansi.ReplaceAllString(w.supervisorLog(i), ""); !strings.Contains(log, "seen_by=notify") {
			t.Errorf("supervisor %s saw its run's cancel other than by notification:\n%s", ids[i], log)
		}
	}
	waitUntil(t, 30*time.Second, "only "+first+" to listen once the runs are gone", onlyFirst)
}

func hexMD5(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

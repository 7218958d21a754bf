package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/test/pgtemp"
)

// ---------------------------------------------------------------------------
// Connections: pgbouncer in transaction mode, and what an idle supervisor holds.
// PostgreSQL only by nature: SQLite has no server, no connections to count
// and no pgbouncer.

// TestBehindPgbouncer: with ADE_DATABASE_URL through a real pgbouncer in
// transaction pooling mode and ADE_DATABASE_LISTEN_URL straight to the
// server, migrate (twice), the schema check, claims, leases, results and a
// cancel all work: no prepared statement, session lock or other session
// state is left on the pooled connections (the differing LISTEN URL turns
// pgx's exec mode on).
func TestBehindPgbouncer(t *testing.T) {
	t.Parallel()
	direct := pgtemp.ForTest(t, "ade_e2e")
	bounced := pgtemp.Pgbouncer(t, direct)
	w, cfg, build := worldWithBuild(t, "postgres", map[string]string{
		"ADE_DATABASE_URL": bounced, "ADE_DATABASE_LISTEN_URL": direct, "ADE_WORKER_ID": "bounced"})
	// The test's own reads go direct: the supervisor's commands are under
	// test, not the test's handle (which has no LISTEN URL to tell it).
	w.st = pgtemp.Open(t, direct)
	if out, errOut, err := w.try("migrate"); err != nil || !strings.Contains(out+errOut, "migrated") {
		t.Fatalf("second migrate through pgbouncer: %v\n%s%s", err, out, errOut)
	}
	w.installReadyBuild(cfg, build)
	w.startAndWaitForStartedLine()

	var runs []string
	for i := 0; i < 6; i++ {
		runs = append(runs, w.addRun(cfg, w.addDocument("doc.csv", csv())))
	}
	for id, r := range w.waitForStatus("runs", runs, 2*time.Minute) {
		if r.Status != "succeeded" || r.AttemptCount != 1 {
			t.Errorf("run %s = %+v (%s), want succeeded at the first attempt", id, r, r.errText())
		}
	}

	// A cancel reaches the supervisor through its LISTEN connection.
	slow := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=120")))
	w.waitEngine(slow)
	w.supervisor("cancel", "run", slow)
	cancelled := time.Now()
	waitUntil(t, 30*time.Second, "the cancelled run's engine to stop", func() bool { return len(w.engineProcs(slow)) == 0 })
	if took := time.Since(cancelled); took > 5*time.Second {
		t.Errorf("the cancelled run's engine stopped %v after the cancel, want within seconds", took.Round(time.Millisecond))
	}
	// LISTEN went straight to the server: its session shows there as the
	// supervisor's, listening.
	var listening int
	w.query(&listening, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ade-worker bounced' AND query LIKE 'LISTEN%'`)
	if listening != 1 {
		t.Errorf("%d LISTEN sessions of the supervisor on the server, want 1", listening)
	}
	log := w.supervisorLog(0)
	for _, bad := range []string{"not migrated", "prepared statement", " ERR "} {
		if strings.Contains(log, bad) {
			t.Errorf("supervisor log mentions %q:\n%s", bad, log)
		}
	}
}

// TestIdleSupervisorHoldsTwoConnections counts one supervisor's sessions on
// the server (by its application_name): busy with concurrency 4 it may use
// up to its pool (the concurrency + 2, plus LISTEN); idle it keeps at most
// one pooled connection and its LISTEN connection. The intervals are the
// defaults: the tests' usual ones (a cleanup every 0.5 s, polls every
// 0.2 s) make a supervisor with nothing to do a busy one.
func TestIdleSupervisorHoldsTwoConnections(t *testing.T) {
	t.Parallel()
	w, cfg, _ := readyWorld(t, "postgres", map[string]string{"ADE_WORKER_ID": "counted", "ADE_WORKER_CONCURRENCY": "4",
		"ADE_WORKER_POLL_INTERVAL": "0.5", "ADE_WORKER_POLL_INTERVAL_MAX": "2", "ADE_WORKER_CLEANUP_INTERVAL": "30"})
	sessions := func() int {
		var n int
		w.query(&n, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ade-worker counted' AND datname = current_database()`)
		return n
	}
	var runs []string
	for i := 0; i < 12; i++ {
		runs = append(runs, w.addRun(cfg, w.addDocument("doc.csv", csv("sleep=0.3"))))
	}
	busyPeak := 0
	waitUntil(t, 2*time.Minute, "the runs to end", func() bool {
		busyPeak = max(busyPeak, sessions())
		return w.count(`SELECT COUNT(*) FROM runs WHERE id IN ? AND status IN ('succeeded', 'failed')`, runs) == len(runs)
	})
	for id, r := range w.waitForStatus("runs", runs, 0) {
		if r.Status != "succeeded" {
			t.Errorf("run %s = %+v (%s), want succeeded", id, r, r.errText())
		}
	}
	if busyPeak > 4+2+1 {
		t.Errorf("busy supervisor held %d sessions, want at most its pool (6) and LISTEN", busyPeak)
	}
	// Idle: the extra connections close when the pool's busy spell ends.
	waitUntil(t, 30*time.Second, "the idle supervisor to hold 2 sessions", func() bool { return sessions() <= 2 })
	// Then, over 10 s, a session seen across a second or more is kept; two
	// periodic tasks that tick together may open a third for one
	// statement, closed when it returns.
	type seen struct{ first, last time.Time }
	pids := map[int]*seen{}
	var samples [][]int
	rawPeak := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		var sample []int
		w.query(&sample, `SELECT pid FROM pg_stat_activity WHERE application_name = 'ade-worker counted' AND datname = current_database()`)
		now := time.Now()
		for _, pid := range sample {
			if pids[pid] == nil {
				pids[pid] = &seen{first: now}
			}
			pids[pid].last = now
		}
		samples = append(samples, sample)
		rawPeak = max(rawPeak, len(sample))
	}
	keptPeak := 0
	for _, sample := range samples {
		kept := 0
		for _, pid := range sample {
			if pids[pid].last.Sub(pids[pid].first) >= time.Second {
				kept++
			}
		}
		keptPeak = max(keptPeak, kept)
	}
	t.Logf("sessions of one supervisor (concurrency 4): %d at most while busy; over 10 s idle %d kept at most, %d at most counting one-statement ones (%d sessions seen)",
		busyPeak, keptPeak, rawPeak, len(pids))
	if keptPeak > 2 {
		t.Errorf("idle supervisor kept up to %d sessions over 10 s, want at most 2 (one pooled, one LISTEN)", keptPeak)
	}
}

// TestClockSteppedBackDoesNotFreezeRecovery: a SIGKILLed supervisor's run
// whose lease ends an hour ahead of the database's now (as when the
// database's clock was stepped back an hour after the lease was written) is
// rescued by another supervisor within about two leases, not an hour.
func TestClockSteppedBackDoesNotFreezeRecovery(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		const lease = 2 * time.Second
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "2", "ADE_WORKER_ID": "first"})
		run := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=120")))
		w.waitEngine(run)
		kill(t, w.sups[0])
		res := w.st.TestDB().Exec(`UPDATE runs SET claim_expires_at = `+w.plus("claim_expires_at", 3600)+` WHERE id = ? AND status = 'running'`, run)
		if res.Error != nil || res.RowsAffected != 1 {
			t.Fatalf("moved %d leases an hour ahead (%v), want the running run's", res.RowsAffected, res.Error)
		}
		w.env["ADE_WORKER_ID"] = "second"
		w.startAndWaitForStartedLine()
		started := time.Now()
		waitUntil(t, 2*time.Minute, "the run's second attempt", func() bool {
			r := w.job("runs", run)
			return r.AttemptCount == 2 && r.ClaimedBy != nil && *r.ClaimedBy == "second"
		})
		took := time.Since(started)
		t.Logf("run rescued %s after the second supervisor started (lease %s)", took.Round(time.Millisecond), lease)
		if took > 3*lease+time.Second {
			t.Errorf("run rescued %s after the second supervisor started, want within about two leases (%s)", took.Round(time.Millisecond), 2*lease)
		}
	})
}

// TestClockSteppedForwardRerunsNothing: with the database's clock stepped
// an hour forward (simulated by moving what the worker wrote an hour back:
// the supervisor's row, the leadership and, for a second, the running
// job's lease), a running job's lease looks an hour expired. Its holder is alive and renews it on its
// own clock, and the leader, which saw that holder's beat move, gives it
// the time to: the job runs once, to success, and no lease is lost.
func TestClockSteppedForwardRerunsNothing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "2", "ADE_WORKER_ID": "only"})
		w.waitForLogLine(0, "became leader", 30*time.Second)
		run := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=6")))
		w.waitEngine(run)
		back := func(col string) string {
			if backend == "sqlite" {
				return fmt.Sprintf(`(strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '-3600 seconds') || '000')`, col)
			}
			return col + ` - interval '3600 seconds'`
		}
		w.exec(`UPDATE ade_worker_supervisors SET last_seen_at = ` + back("last_seen_at"))
		w.exec(`UPDATE ade_worker_leader SET expires_at = ` + back("expires_at"))
		// The lease is kept an hour behind for longer than a rescue pass
		// (lease / 4): the leader sees it expired, more than once, before
		// the holder's renewal (every lease / 3) can move it.
		hourAgo := `now() - interval '3600 seconds'`
		if backend == "sqlite" {
			hourAgo = `(strftime('%Y-%m-%d %H:%M:%f', 'now', '-3600 seconds') || '000')`
		}
		for end := time.Now().Add(1200 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			w.exec(`UPDATE runs SET claim_expires_at = `+hourAgo+` WHERE id = ? AND status = 'running'`, run)
		}
		r := w.waitForStatus("runs", []string{run}, 2*time.Minute)[run]
		if r.Status != "succeeded" || r.AttemptCount != 1 {
			t.Errorf("run = %+v (%s), want succeeded at its first attempt", r, r.errText())
		}
		if log := w.supervisorLog(0); strings.Contains(log, "lease lost") || strings.Contains(log, "recovered jobs") {
			t.Errorf("the supervisor lost or rescued a live job:\n%s", log)
		}
	})
}

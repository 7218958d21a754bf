package e2e

import (
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
// state is left on the pooled connections.
func TestBehindPgbouncer(t *testing.T) {
	t.Parallel()
	direct := pgtemp.ForTest(t, "ade_e2e")
	bounced := pgtemp.Pgbouncer(t, direct)
	w, cfg, build := worldWithBuild(t, "postgres", map[string]string{
		"ADE_DATABASE_URL": bounced, "ADE_DATABASE_LISTEN_URL": direct, "ADE_WORKER_ID": "bounced"})
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

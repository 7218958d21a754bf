package e2e

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/test/pgtemp"
)

// TestPostgresRestartWhileJobsRun restarts the PostgreSQL server under
// running jobs: no result is lost, no job fails, the supervisor keeps
// serving and its wake-ups come back. The server is a private cluster: the
// shared one serves the other tests at the same time.
func TestPostgresRestartWhileJobsRun(t *testing.T) {
	t.Parallel()
	pg := pgtemp.ForTestCluster(t)
	dbURL, drop, err := pgtemp.Create(context.Background(), pg.AdminURL, "ade_restart")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop() })
	w, cfg, _ := readyWorld(t, "postgres", map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "30", "ADE_DATABASE_URL": dbURL})
	var runs []string
	for i := 0; i < 4; i++ {
		runs = append(runs, w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=3"))))
	}
	w.waitForStatus("runs", runs[:2], 30*time.Second, "running")
	if err := pg.Restart(context.Background()); err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	w.reconnect()
	rows := w.waitForStatus("runs", runs, 2*time.Minute)
	for id, r := range rows {
		if r.Status != "succeeded" || r.AttemptCount != 1 {
			t.Errorf("run %s after the restart = %+v (%s), want succeeded at the first attempt", id, r, r.errText())
		}
	}
	// A run queued after the restart is picked up promptly: LISTEN is back
	// (or polling covers it).
	late := w.addRun(cfg, w.addDocument("late.csv", csv()))
	if r := w.waitForStatus("runs", []string{late}, 30*time.Second)[late]; r.Status != "succeeded" {
		t.Errorf("run queued after the restart = %+v (%s)", r, r.errText())
	}
	log := strings.Join(w.supervisorLogs(), "\n")
	if !strings.Contains(log, "database") {
		t.Errorf("the supervisor log does not mention the outage")
	}
}

// reconnect replaces the test's own database handle after a restart.
func (w *world) reconnect() {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := w.st.Ping(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("database did not come back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSQLiteLockedLongerThanBusyTimeout: another process holds the write
// lock for longer than the busy timeout while a job ends; the supervisor
// retries the final write until it lands instead of losing the result.
func TestSQLiteLockedLongerThanBusyTimeout(t *testing.T) {
	t.Parallel()
	w, cfg, _ := readyWorld(t, "sqlite", map[string]string{
		"ADE_DATABASE_SQLITE_BUSY_TIMEOUT_MS": "300",
		"ADE_WORKER_JOB_LEASE_SECONDS":        "30",
	})
	run := w.addRun(cfg, w.addDocument("a.csv", csv("sleep=1")))
	w.waitForStatus("runs", []string{run}, 30*time.Second, "running")

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(w.dir, "db", "ade.sqlite")+"?_txlock=exclusive&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	if _, err := tx.Exec(`UPDATE documents SET updated_at = updated_at WHERE 1 = 0`); err != nil {
		t.Fatal(err)
	}
	// The run ends meanwhile; its final write cannot land and is retried.
	w.waitForLogLine(0, "retrying until it lands", time.Minute)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r := w.waitForStatus("runs", []string{run}, 30*time.Second)[run]
	if r.Status != "succeeded" || r.AttemptCount != 1 {
		t.Errorf("run = %+v (%s), want succeeded at the first attempt", r, r.errText())
	}
	// Logged after the write commits: the row can be read first (this
	// failed under load when the log was read once).
	w.waitForLogLine(0, "landed after retries", 30*time.Second)
}

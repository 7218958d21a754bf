package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func TestUnmigratedDatabaseIsRefused(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		cmd := exec.Command(filepath.Join(binDir, "supervisor"))
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ADE_DATABASE_URL=" + newDatabase(t, backend, t.TempDir())}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "supervisor migrate") {
			t.Errorf("supervisor on an unmigrated database: err %v, output %q; want a failure naming `supervisor migrate`", err, out)
		}
	})
}

func TestBadSettingsStopStartup(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"ADE_WORKER_CONCURRENCY":  "abc",
		"ADE_RUN_TIMEOUT_SECONDS": "-5",
		"ADE_DATABASE_URL":        "mysql://localhost/ade",
	}
	for env, value := range tests {
		cmd := exec.Command(filepath.Join(binDir, "supervisor"), "status")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), env + "=" + value,
			"ADE_WORKSPACES_DIR=" + t.TempDir()}
		if env != "ADE_DATABASE_URL" {
			cmd.Env = append(cmd.Env, "ADE_DATABASE_URL=sqlite:///"+filepath.Join(t.TempDir(), "x.sqlite"))
		}
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], env) {
			t.Errorf("%s=%s: err %v, output %q; want one line naming the variable", env, value, err, out)
		}
	}
}

func TestJobrunnerRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"malformed":       "{not json",
		"unknown version": `{"version": 7, "kind": "run", "job_id": "x", "events_path": "/tmp/x"}`,
		"oversized":       `{"version": 1, "job_id": "` + strings.Repeat("a", 2<<20) + `"}`,
		"empty":           "",
	}
	for name, input := range tests {
		cmd := exec.Command(filepath.Join(binDir, "jobrunner"))
		cmd.Env = []string{}
		cmd.Stdin = strings.NewReader(input)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		exit, _ := err.(*exec.ExitError)
		if exit == nil || exit.ExitCode() != 2 {
			t.Errorf("%s: jobrunner exit = %v, want 2", name, err)
			continue
		}
		var res map[string]any
		if json.Unmarshal(stdout.Bytes(), &res) != nil || res["reason"] != "bad_spec" || res["error"] == "" {
			t.Errorf("%s: result = %q, want a bad_spec result with an error", name, stdout.String())
		}
		if !strings.Contains(stderr.String(), "job spec") {
			t.Errorf("%s: stderr = %q, want a message about the job spec", name, stderr.String())
		}
	}
}

// TestJobSpecReproducesRunByHand: the spec printed by `supervisor job-spec`,
// piped into jobrunner, runs the job the same way the supervisor would.
func TestJobSpecReproducesRunByHand(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		w.stopAll() // nothing may claim the run; we run it by hand
		run := w.addRun(cfg, w.addDocument("byhand.csv", csv()))
		spec := w.supervisor("job-spec", run)
		if strings.Contains(spec, `"lease"`) {
			t.Errorf("a spec for a run by hand carries a lease, so its jobrunner would fence itself:\n%s", spec)
		}
		cmd := exec.Command(filepath.Join(binDir, "jobrunner"))
		cmd.Env = []string{} // the spec carries everything
		cmd.Stdin = strings.NewReader(spec)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("jobrunner < job-spec: %v\nstdout %s\nstderr %s", err, stdout.String(), stderr.String())
		}
		var res struct {
			Status   string
			ExitCode int `json:"exit_code"`
			Summary  map[string]any
		}
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("result %q: %v", stdout.String(), err)
		}
		if res.Status != "succeeded" || res.ExitCode != 0 || obj(res.Summary["counts"]) == nil {
			t.Errorf("result = %+v, want succeeded with the engine summary", res)
		}
		events := readEvents(t, w.runEvents(run))
		if events[0]["event"] != "run.start" {
			t.Errorf("first event = %v, want run.start", events[0]["event"])
		}
		findEvent(t, events, "engine.run.completed")
		if _, err := os.Stat(filepath.Join(w.runDir(run), "output", "normalized.csv")); err != nil {
			t.Errorf("output: %v", err)
		}
		if r := w.job("runs", run); r.Status != "queued" {
			t.Errorf("run by hand changed the database: %+v", r)
		}
	})
}

// TestConcurrencyLimit: never more jobs at once than ADE_WORKER_CONCURRENCY,
// and the limit is actually reached.
func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_CONCURRENCY": "2"})
		var runs []string
		for i := 0; i < 6; i++ {
			runs = append(runs, w.addRun(cfg, w.addDocument("c.csv", csv("sleep=0.7"))))
		}
		peak := 0
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			var running, done int
			w.query(&running, `SELECT COUNT(*) FROM runs WHERE status = 'running'`)
			w.query(&done, `SELECT COUNT(*) FROM runs WHERE status IN ('succeeded', 'failed')`)
			peak = max(peak, running)
			if done == len(runs) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		rows := w.waitForStatus("runs", runs, 5*time.Second)
		for id, r := range rows {
			if r.Status != "succeeded" {
				t.Errorf("run %s = %+v (%s)", id, r, r.errText())
			}
		}
		if peak != 2 {
			t.Errorf("peak running runs = %d, want exactly the concurrency limit 2", peak)
		}
	})
}

// TestADEAPISchema runs the pipeline on a database made by the ADE API's own
// migrations (foreign keys on), after `supervisor migrate` added what the
// worker needs without touching its rows.
func TestADEAPISchema(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db", "ade.sqlite")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o755); err != nil {
		t.Fatal(err)
	}
	schema, err := os.ReadFile(filepath.Join(repoDir, "..", "shared", "ade-schema", "ade-api-sqlite.sql"))
	if err != nil {
		t.Skipf("ADE API schema not available beside the repo: %v", err)
	}
	db, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(schema)); err != nil {
		t.Fatalf("load ADE schema: %v", err)
	}
	// A row of the API's own, which migrate must keep.
	if _, err := db.Exec(`INSERT INTO users (id, email, email_normalized, hashed_password) VALUES ('u1', 'a@b.c', 'a@b.c', 'x')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	w := newWorld(t, "sqlite", map[string]string{"ADE_DATABASE_URL": "sqlite:///" + dbPath}) // runs migrate
	w.supervisor("migrate")                                                                  // twice: nothing changes, nothing fails

	var users, alembic int
	w.query(&users, `SELECT COUNT(*) FROM users`)
	w.query(&alembic, `SELECT COUNT(*) FROM alembic_version WHERE version_num = '0002_document_change_feed_refactor'`)
	if users != 1 || alembic != 1 {
		t.Fatalf("migrate changed the API's rows: users %d, alembic_version %d", users, alembic)
	}
	var fk int
	w.query(&fk, `PRAGMA foreign_keys`)
	if fk != 1 {
		t.Errorf("foreign_keys = %d, want the worker to keep them on", fk)
	}

	cfg := w.addConfig("")
	build := w.addBuild(cfg)
	doc := w.addDocument("contacts.csv", csv())
	run := w.addRun(cfg, doc)
	w.start()
	if b := w.waitForStatus("builds", []string{build}, 3*time.Minute)[build]; b.Status != "ready" {
		t.Fatalf("build on the ADE schema = %+v (%s)", b, b.errText())
	}
	if r := w.waitForStatus("runs", []string{run}, time.Minute)[run]; r.Status != "succeeded" {
		t.Fatalf("run on the ADE schema = %+v (%s)", r, r.errText())
	}
	var metrics, fields, columns int
	w.query(&metrics, `SELECT COUNT(*) FROM run_metrics WHERE run_id = ?`, run)
	w.query(&fields, `SELECT COUNT(*) FROM run_fields WHERE run_id = ?`, run)
	w.query(&columns, `SELECT COUNT(*) FROM run_table_columns WHERE run_id = ?`, run)
	if metrics != 1 || fields == 0 || columns == 0 {
		t.Errorf("results on the ADE schema: metrics %d, fields %d, columns %d", metrics, fields, columns)
	}
	assertDocumentChanges(t, w, doc, "processed", []string{"processing", "processed"})
}

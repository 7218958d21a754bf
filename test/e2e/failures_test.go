package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// worldWithBuild is a world with the sample configuration and a queued
// build of it; no supervisor runs yet.
func worldWithBuild(t *testing.T, backend string, extra map[string]string) (w *world, cfg, build string) {
	t.Helper()
	w = newWorld(t, backend, extra)
	cfg = w.addConfig("")
	return w, cfg, w.addBuild(cfg)
}

// readyWorld is a world with one configuration whose build is ready (a
// copy of the shared venv, see installReadyBuild) and a supervisor running.
func readyWorld(t *testing.T, backend string, extra map[string]string) (w *world, cfg, build string) {
	t.Helper()
	w, cfg, build = worldWithBuild(t, backend, extra)
	w.installReadyBuild(cfg, build)
	w.startAndWaitForStartedLine()
	return w, cfg, build
}

func TestEngineFailureAndTimeout(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_RUN_TIMEOUT_SECONDS": "5"}) // Python may take seconds to start on a loaded machine
		failing := w.addRun(cfg, w.addDocument("fail.csv", csv("exit=7")))
		slowDoc := w.addDocument("slow.csv", csv("spawn-sleeper=120", "sleep=60"))
		slow := w.addRun(cfg, slowDoc)

		rows := w.waitForStatus("runs", []string{failing, slow}, 90*time.Second)
		if r := rows[failing]; r.Status != "failed" || r.ExitCode == nil || *r.ExitCode != 7 || !strings.Contains(r.errText(), "exit status 7") {
			t.Errorf("failing run = %+v (%s), want failed with exit 7", r, r.errText())
		}
		if r := rows[slow]; r.Status != "failed" || r.ExitCode == nil || *r.ExitCode != 124 || !strings.Contains(r.errText(), "timed out") {
			t.Errorf("slow run = %+v (%s), want failed with exit 124 and a timeout message", r, r.errText())
		}
		assertDocumentChanges(t, w, slowDoc, "failed", []string{"processing", "failed"})

		// The engine's own child must be gone too: timeouts kill the group.
		pidText, err := os.ReadFile(filepath.Join(w.runDir(slow), "output", "sleeper.pid"))
		if err != nil {
			t.Fatalf("sleeper pid: %v", err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
		if alive(pid) {
			t.Errorf("engine child %d is still alive after the timeout", pid)
		}
		events := w.finishedRunEvents(t, slow)
		if d := data(events[len(events)-1]); d["exit_code"] != float64(124) {
			t.Errorf("run.complete exit_code = %v, want 124", d["exit_code"])
		}
	})
}

// alive reports whether pid is a live process (zombies count as dead).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && syscall.Kill(pid, 0) == nil
}

func TestCrashIsRetriedThenFails(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_MAX_ATTEMPTS": "2"})
		run := w.addRun(cfg, w.addDocument("crash.csv", csv("crash")))
		r := w.waitForStatus("runs", []string{run}, time.Minute)[run]
		if r.Status != "failed" || r.AttemptCount != 2 || !strings.Contains(r.errText(), "SIGKILL") || !strings.Contains(r.errText(), "2 attempts") {
			t.Errorf("run = %+v (%s), want failed after 2 attempts naming SIGKILL", r, r.errText())
		}
		events := readEventsEndingWith(t, w.runEvents(run), "run.complete")
		starts := 0
		for _, e := range events {
			if e["event"] == "run.start" {
				starts++
			}
		}
		if starts != 2 {
			t.Errorf("run.start events = %d, want one per attempt (2)", starts)
		}
		assertFirstLast(t, events, "run.start", "run.complete")
	})
}

func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, map[string]string{
			"ADE_WORKER_JOB_BACKOFF_BASE_SECONDS": "60",
			"ADE_WORKER_JOB_BACKOFF_MAX_SECONDS":  "600",
		})
		cfg := w.addConfig("")
		// Two runs held by a worker that died: one with attempts left, one without.
		retry := w.addRun(cfg, w.addDocument("a.csv", csv()))
		exhausted := w.addRun(cfg, w.addDocument("b.csv", csv()))
		past := w.ts(time.Now().Add(-time.Minute))
		w.exec(`UPDATE runs SET status = 'running', claimed_by = 'dead-worker', claim_expires_at = ?, attempt_count = 2, max_attempts = 3 WHERE id = ?`, past, retry)
		w.exec(`UPDATE runs SET status = 'running', claimed_by = 'dead-worker', claim_expires_at = ?, attempt_count = 3, max_attempts = 3 WHERE id = ?`, past, exhausted)
		before := time.Now()
		w.start()

		r := w.waitForStatus("runs", []string{retry}, 30*time.Second, "queued")[retry]
		// attempt 2 -> base * 2^(2-1) = 120 s.
		delay := r.AvailableAt.Sub(before)
		if r.errText() != "Run lease expired" || r.ClaimedBy != nil || delay < 115*time.Second || delay > 130*time.Second {
			t.Errorf("re-queued run = %+v (%s), available in %s; want lease-expired error and ~120s backoff", r, r.errText(), delay)
		}
		e := w.waitForStatus("runs", []string{exhausted}, 30*time.Second)[exhausted]
		if e.Status != "failed" || !strings.Contains(e.errText(), "Run lease expired") {
			t.Errorf("exhausted run = %+v (%s), want failed", e, e.errText())
		}
	})
}

func TestFailedBuildFailsItsRuns(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := worldWithBuild(t, backend, map[string]string{"ADE_ENGINE_SPEC": filepath.Join(t.TempDir(), "no-such-engine")})
		run := w.addRun(cfg, w.addDocument("a.csv", csv()))
		w.start()
		b := w.waitForStatus("builds", []string{build}, 2*time.Minute)[build]
		if b.Status != "failed" || !strings.Contains(b.errText(), "Installing the engine") {
			t.Errorf("build = %+v (%s), want failed while installing the engine", b, b.errText())
		}
		r := w.waitForStatus("runs", []string{run}, 30*time.Second)[run]
		if r.Status != "failed" || r.errText() != "Build failed before run could start" || r.AttemptCount != 0 {
			t.Errorf("run = %+v (%s), want failed before start", r, r.errText())
		}
		if _, err := os.Stat(filepath.Join(w.buildDir(cfg, build), ".venv")); !os.IsNotExist(err) {
			t.Errorf("a failed build left a venv behind (stat err %v)", err)
		}
	})
}

func TestRunWithoutBuildAndMissingVenvRebuilt(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := readyWorld(t, backend, nil)
		other := w.addConfig("")
		noBuild := w.addRun(other, w.addDocument("a.csv", csv()))
		r := w.waitForStatus("runs", []string{noBuild}, 30*time.Second)[noBuild]
		if r.Status != "failed" || r.ExitCode == nil || *r.ExitCode != 2 || r.errText() != "Build is required before running" {
			t.Errorf("run without build = %+v (%s)", r, r.errText())
		}

		// A ready build whose venv is missing on this host is rebuilt there,
		// under the build lock, and the run goes on.
		venv := filepath.Join(w.buildDir(cfg, build), ".venv")
		if err := os.RemoveAll(venv); err != nil {
			t.Fatal(err)
		}
		missing := w.addRun(cfg, w.addDocument("b.csv", csv()), "--build", build)
		r = w.waitForStatus("runs", []string{missing}, 2*time.Minute)[missing]
		if r.Status != "succeeded" {
			t.Errorf("run with missing venv = %+v (%s), want succeeded after a rebuild", r, r.errText())
		}
		if _, err := os.Stat(filepath.Join(venv, "ade-build.json")); err != nil {
			t.Errorf("venv not rebuilt: %v", err)
		}
		if b := w.job("builds", build); b.Status != "ready" {
			t.Errorf("build after the rebuild = %+v (%s), want still ready", b, b.errText())
		}
		events := readEventsEndingWith(t, w.runEvents(missing), "run.complete")
		findEvent(t, events, "run.venv.rebuild")
		assertFirstLast(t, events, "run.start", "run.complete")
	})
}

func TestDryRunAndValidateOnly(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		dryDoc := w.addDocument("dry.csv", csv())
		dry := w.addRun(cfg, dryDoc, "--options", `{"dry_run": true}`)
		valDoc := w.addDocument("val.csv", csv())
		validate := w.addRun(cfg, valDoc, "--options", `{"validate_only": true}`)

		bad := filepath.Join(t.TempDir(), "bad-config")
		copyDir(t, filepath.Join(repoDir, "test", "config"), bad)
		if err := os.WriteFile(filepath.Join(bad, "INVALID"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		badCfg := w.addConfig(bad)
		badBuild := w.addBuild(badCfg)
		if b := w.waitForStatus("builds", []string{badBuild}, 3*time.Minute)[badBuild]; b.Status != "ready" {
			t.Fatalf("build of the invalid config = %+v (%s)", b, b.errText())
		}
		invalid := w.addRun(badCfg, w.addDocument("inv.csv", csv()), "--options", `{"validate_only": true}`)

		rows := w.waitForStatus("runs", []string{dry, validate, invalid}, time.Minute)
		for _, id := range []string{dry, validate} {
			if r := rows[id]; r.Status != "succeeded" || r.ExitCode == nil || *r.ExitCode != 0 {
				t.Errorf("run %s = %+v (%s), want succeeded", id, r, r.errText())
			}
		}
		if r := rows[invalid]; r.Status != "failed" || r.ExitCode == nil || *r.ExitCode != 1 {
			t.Errorf("validate_only of an invalid config = %+v (%s), want failed with exit 1", r, r.errText())
		}
		for _, doc := range []string{dryDoc, valDoc} {
			assertDocumentChanges(t, w, doc, "uploaded", nil)
		}
		events := w.finishedRunEvents(t, validate)
		findEvent(t, events, "engine.config.validate.completed")
		var metrics int
		w.query(&metrics, `SELECT COUNT(*) FROM run_metrics WHERE run_id IN (?, ?)`, dry, validate)
		if metrics != 0 {
			t.Errorf("dry_run/validate_only stored %d metrics rows, want 0", metrics)
		}
	})
}

// TestBadRunsDoNotStopTheWorker: each run with broken data fails with a clear
// message, and a good run queued behind them still succeeds.
func TestBadRunsDoNotStopTheWorker(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_CONCURRENCY": "1"})
		noPackage := w.addConfig("")
		w.waitForStatus("builds", []string{w.addBuild(noPackage)}, 3*time.Minute)
		if err := os.RemoveAll(filepath.Join(w.dir, "workspaces", w.ws, "config_packages", noPackage)); err != nil {
			t.Fatal(err)
		}
		w.stopAll() // nothing may claim a run before its row is broken
		// PostgreSQL's json type cannot hold malformed JSON; SQLite's can.
		badOptions := w.addRun(cfg, w.addDocument("a.csv", csv()))
		if backend == "sqlite" {
			w.exec(`UPDATE runs SET run_options = '{"dry_run": ' WHERE id = ?`, badOptions)
		} else {
			w.exec(`UPDATE runs SET run_options = '["not", "an", "object"]' WHERE id = ?`, badOptions)
		}

		missingRowDoc := w.addDocument("b.csv", csv())
		missingRow := w.addRun(cfg, missingRowDoc)
		w.exec(`UPDATE runs SET input_document_id = 'no-such-document' WHERE id = ?`, missingRow)

		missingFileDoc := w.addDocument("c.csv", csv())
		missingFile := w.addRun(cfg, missingFileDoc)
		var stored string
		w.query(&stored, `SELECT stored_uri FROM documents WHERE id = ?`, missingFileDoc)
		if err := os.Remove(filepath.Join(w.dir, "workspaces", w.ws, "documents", stored)); err != nil {
			t.Fatal(err)
		}

		hostileDoc := w.addDocument("d.csv", csv())
		w.exec(`UPDATE documents SET stored_uri = '../../../../etc/passwd' WHERE id = ?`, hostileDoc)
		hostile := w.addRun(cfg, hostileDoc)

		missingPackage := w.addRun(noPackage, w.addDocument("e.csv", csv()))

		good := w.addRun(cfg, w.addDocument("f.csv", csv()))
		w.start()

		rows := w.waitForStatus("runs", []string{badOptions, missingRow, missingFile, hostile, missingPackage, good}, time.Minute)
		want := map[string]string{
			badOptions:     "invalid run_options",
			missingRow:     "input document no-such-document does not exist",
			missingFile:    "document file not found",
			hostile:        "stored_uri",
			missingPackage: "configuration package not found",
		}
		for id, msg := range want {
			if r := rows[id]; r.Status != "failed" || !strings.Contains(r.errText(), msg) {
				t.Errorf("run %s = %+v (%q), want failed with %q", id, r, r.errText(), msg)
			}
		}
		if r := rows[good]; r.Status != "succeeded" {
			t.Errorf("good run after the bad ones = %+v (%s), want succeeded", r, r.errText())
		}
	})
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

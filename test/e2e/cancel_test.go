package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// ansi matches the colour codes of the console log format.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// cancelRunSQL is what the ADE API writes to cancel a run.
const cancelRunSQL = `UPDATE runs SET status = 'cancelled', cancelled_at = ?, completed_at = ?,
	claimed_by = NULL, claim_expires_at = NULL WHERE id = ? AND status IN ('queued', 'running')`

// cancelBound is a loose bound on how long a cancelled job's processes may
// live (the targets are 1 s on PostgreSQL, 2 s on SQLite): the heartbeat,
// which found cancels before, comes only every third of the lease.
const cancelBound = 5 * time.Second

// TestCancelRunningRun: the ADE API cancels a running run; its jobrunner,
// engine and the engine's child are gone within a second or two, the row
// stays as the API wrote it, nothing else is written, the events file ends
// with run.complete "cancelled", and the supervisor goes on.
func TestCancelRunningRun(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		sup := w.sups[0]
		slow := w.startSleepingRun(cfg, "spawn-sleeper=60", "sleep=60")
		run, doc := slow.id, slow.doc
		procs := append(slow.procs(), childrenNamed(sup.Process.Pid, "jobrunner")...)
		before, desc := w.documentState(doc), describe(procs)

		cancelled := time.Now()
		now := w.ts(cancelled)
		w.exec(cancelRunSQL, now, now, run)
		took := waitGone(t, cancelled, cancelBound, procs)
		t.Logf("%s: every process of the cancelled run gone %s after the cancel write: %v", backend, took.Round(time.Millisecond), desc)

		events := w.runEvents(run)
		w.waitForCancelledEvent(events, "run.complete")
		var row struct {
			Status      string
			ClaimedBy   *string
			ExitCode    *int
			CancelledAt store.Time
			OutputPath  *string
			Error       *string `gorm:"column:error_message"`
		}
		w.query(&row, `SELECT status, claimed_by, exit_code, cancelled_at, output_path, error_message FROM runs WHERE id = ?`, run)
		if row.Status != "cancelled" || row.ClaimedBy != nil || row.ExitCode != nil || row.OutputPath != nil || row.Error != nil || !row.CancelledAt.Valid {
			t.Errorf("run after the cancel = %+v, want it as the cancel wrote it", row)
		}
		var results int
		w.query(&results, `SELECT (SELECT COUNT(*) FROM run_metrics WHERE run_id = ?) + (SELECT COUNT(*) FROM run_fields WHERE run_id = ?)
			+ (SELECT COUNT(*) FROM run_table_columns WHERE run_id = ?)`, run, run, run)
		if results != 0 {
			t.Errorf("a cancelled run has %d result rows, want 0", results)
		}
		if after := w.documentState(doc); after != before {
			t.Errorf("document after the cancel = %+v, want untouched %+v", after, before)
		}
		w.assertCancelLog(0)
		// PostgreSQL's NOTIFY stopped it, not the backstop poll; SQLite's
		// check of its running ids (woken by the file change) did.
		if via := map[string]string{"postgres": "seen_by=notify", "sqlite": "seen_by=poll"}[backend]; !strings.Contains(ansi.ReplaceAllString(w.supervisorLog(0), ""), via) {
			t.Errorf("supervisor log has no %q", via)
		}
		next := w.addRun(cfg, w.addDocument("good.csv", csv()))
		if r := w.waitForStatus("runs", []string{next}, time.Minute)[next]; r.Status != "succeeded" {
			t.Errorf("run after the cancel = %+v (%s), want succeeded", r, r.errText())
		}
		if r := w.job("runs", run); r.Status != "cancelled" || r.AttemptCount != 1 {
			t.Errorf("cancelled run later = %+v, want still cancelled at attempt 1 (not retried)", r)
		}
	})
}

// TestCancelStubbornEngine: an engine (and its child) that ignore SIGTERM
// are killed after the cancel's short grace (0.5 s), not the jobrunner's
// usual 2 s.
func TestCancelStubbornEngine(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		slow := w.startSleepingRun(cfg, "ignore-sigterm", "spawn-sleeper=60", "sleep=60")
		run := slow.id
		procs := append(slow.procs(), childrenNamed(w.sups[0].Process.Pid, "jobrunner")...)
		desc := describe(procs)
		cancelled := time.Now()
		now := w.ts(cancelled)
		w.exec(cancelRunSQL, now, now, run)
		took := waitGone(t, cancelled, cancelBound, procs)
		t.Logf("%s: every process of the run that ignores SIGTERM gone %s after the cancel write (want about 0.5 s): %v",
			backend, took.Round(time.Millisecond), desc)
		w.waitForCancelledEvent(w.runEvents(run), "run.complete")
		if r := w.job("runs", run); r.Status != "cancelled" {
			t.Errorf("run = %+v, want cancelled", r)
		}
		w.assertCancelLog(0)
	})
}

// TestCancelRunningBuild: `supervisor cancel build` on a build whose import
// check hangs; the build's processes die, its queued run fails at once
// (not at the next cleanup), no venv is left, and the next build works.
func TestCancelRunningBuild(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, map[string]string{"ADE_WORKER_CLEANUP_INTERVAL": "300"})
		slowCfg := w.addConfig(hangingConfig(t))
		build := w.addBuild(slowCfg)
		waiting := w.addRun(slowCfg, w.addDocument("a.csv", csv()), "--build", build)
		sup := w.start()
		dir := w.buildDir(slowCfg, build)
		var procs []int
		waitUntil(t, 3*time.Minute, "the build's import check and its child to run", func() bool {
			procs = findProcs(func(p proc) bool { return strings.Contains(p.cmdline, dir) })
			pidFiles, _ := filepath.Glob(filepath.Join(dir, ".venv.tmp-*-scratch", "hang.pid"))
			data := []byte{}
			if len(pidFiles) == 1 {
				data, _ = os.ReadFile(pidFiles[0])
			}
			return len(procs) >= 2 && strings.HasSuffix(string(data), "\n")
		})
		procs = append(procs, childrenNamed(sup.Process.Pid, "jobrunner")...)
		desc := describe(procs)

		cancelled := time.Now()
		out := w.supervisor("cancel", "build", build)
		committed := time.Now()
		took := waitGone(t, cancelled, cancelBound, procs)
		t.Logf("%s: every process of the cancelled build gone %s after `supervisor cancel` started, %s after it returned: %v",
			backend, took.Round(time.Millisecond), time.Since(committed).Round(time.Millisecond), desc)
		if !strings.Contains(out, "cancelled (it was building)") {
			t.Errorf("supervisor cancel said %q, want it to say the build was cancelled while building", out)
		}
		w.waitForCancelledEvent(filepath.Join(dir, "logs", "events.ndjson"), "build.complete")
		if b := w.job("builds", build); b.Status != "cancelled" || b.ExitCode != nil || b.ClaimedBy != nil {
			t.Errorf("build after the cancel = %+v, want cancelled, no exit code, no claim", b)
		}
		if r := w.waitForStatus("runs", []string{waiting}, 10*time.Second)[waiting]; r.Status != "failed" || r.errText() != store.MsgBuildFailedBefore {
			t.Errorf("queued run of the cancelled build = %+v (%s), want failed: %s", r, r.errText(), store.MsgBuildFailedBefore)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, ".venv*")); len(left) > 0 {
			t.Errorf("a cancelled build left %v", left)
		}
		w.assertCancelLog(0)
		next := w.addBuild(w.addConfig(""))
		if b := w.waitForStatus("builds", []string{next}, 3*time.Minute)[next]; b.Status != "ready" {
			t.Errorf("build after the cancel = %+v (%s), want ready", b, b.errText())
		}
	})
}

// hangingConfig is a configuration package whose import starts a child and
// hangs, so its build stays in the import check until it is stopped. The
// pid file lands in the job's private TMPDIR (the build's scratch folder:
// the sandbox lets the import write nowhere else).
func hangingConfig(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "hanging-config")
	copyDir(t, filepath.Join(repoDir, "test", "config"), dir)
	init := filepath.Join(dir, "ade_config", "__init__.py")
	src, err := os.ReadFile(init)
	if err != nil {
		t.Fatal(err)
	}
	hang := `
import os as _os, subprocess as _sp, sys as _sys, time as _time
_child = _sp.Popen([_sys.executable, "-c", "import time; time.sleep(120)"])
with open(_os.path.join(_os.environ["TMPDIR"], "hang.pid"), "w") as _f:
    _f.write("%d\n" % _child.pid)
_time.sleep(120)
`
	if err := os.WriteFile(init, append(src, hang...), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCancelCommand: `supervisor cancel` on a queued run (never claimed
// afterwards), a finished run (refused, exit non-zero) and bad arguments.
func TestCancelCommand(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := worldWithBuild(t, backend, nil)
		queued := w.addRun(cfg, w.addDocument("q.csv", csv()), "--build", build)
		if out := w.supervisor("cancel", "run", queued); !strings.Contains(out, "cancelled (it was queued)") {
			t.Errorf("supervisor cancel run (queued) said %q", out)
		}
		w.installReadyBuild(cfg, build)
		w.start()
		done := w.addRun(cfg, w.addDocument("d.csv", csv()), "--build", build)
		if r := w.waitForStatus("runs", []string{done}, 3*time.Minute)[done]; r.Status != "succeeded" {
			t.Fatalf("run = %+v (%s), want succeeded", r, r.errText())
		}
		if r := w.job("runs", queued); r.Status != "cancelled" || r.AttemptCount != 0 || r.ClaimedBy != nil {
			t.Errorf("cancelled queued run = %+v, want cancelled and never claimed", r)
		}
		if _, err := os.Stat(w.runDir(queued)); !os.IsNotExist(err) {
			t.Errorf("the cancelled queued run has a run folder (stat: %v): it was started", err)
		}
		refusals := []struct {
			args []string
			want string
		}{
			{[]string{"cancel", "run", done}, "is already succeeded: only queued or running jobs can be cancelled"},
			{[]string{"cancel", "run", queued}, "is already cancelled"},
			{[]string{"cancel", "build", build}, "is already ready"},
			{[]string{"cancel", "run", store.NewID()}, "no run with id"},
			{[]string{"cancel", "job", done}, "want two arguments, run|build and the job's ID"},
			{[]string{"cancel", "run"}, "want two arguments, run|build and the job's ID"},
		}
		for _, r := range refusals {
			out, errOut, err := w.try(r.args...)
			if err == nil || !strings.Contains(errOut, r.want) {
				t.Errorf("supervisor %s: err %v, stdout %q, stderr %q; want a non-zero exit saying %q", strings.Join(r.args, " "), err, out, errOut, r.want)
			}
		}
		if r := w.job("runs", done); r.Status != "succeeded" {
			t.Errorf("a refused cancel changed the finished run: %+v", r)
		}
	})
}

// TestCancelRacesCompletion cancels runs around the moment they finish:
// each ends wholly cancelled (no results, document as it was, events end
// "cancelled") or wholly succeeded (results, document processed, the cancel
// refused), never a mix.
func TestCancelRacesCompletion(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		wins := map[string]int{}
		for i := 0; i < 16; i++ {
			doc := w.addDocument("race.csv", csv("sleep=0.3"))
			run := w.addRun(cfg, doc)
			events := w.runEvents(run)
			waitUntil(t, time.Minute, "the engine to start its last 0.3 s", func() bool {
				return hasEvent(events, "engine.test.sleep") || w.job("runs", run).Status == "succeeded"
			})
			// Spread the cancels over the engine's last moments and the
			// worker's final write; half as the API writes it, half by CLI.
			time.Sleep(time.Duration(i/2%8) * 70 * time.Millisecond)
			cancelWon := false
			if i%2 == 0 {
				now := w.ts(time.Now())
				res := w.st.TestDB().Exec(cancelRunSQL, now, now, run)
				if res.Error != nil {
					t.Fatal(res.Error)
				}
				cancelWon = res.RowsAffected == 1
			} else {
				_, errOut, err := w.try("cancel", "run", run)
				if err != nil && !strings.Contains(errOut, "already succeeded") {
					t.Fatalf("supervisor cancel run: %v: %s", err, errOut)
				}
				cancelWon = err == nil
			}
			r := w.waitForStatus("runs", []string{run}, time.Minute)[run]
			if cancelWon {
				w.waitForCancelledEvent(events, "run.complete")
				w.assertCancelledRun(run, doc, r)
			} else {
				w.assertSucceededRun(run, doc, r, events)
			}
			wins[r.Status]++
		}
		t.Logf("%s: outcomes %v", backend, wins)
		w.assertCancelLog(0)
	})
}

func (w *world) assertCancelledRun(run, doc string, r jobRow) {
	t := w.t
	t.Helper()
	var results int
	w.query(&results, `SELECT COUNT(*) FROM run_metrics WHERE run_id = ?`, run)
	d := w.documentState(doc)
	if r.Status != "cancelled" || r.ExitCode != nil || results != 0 || d.Status == "processed" {
		t.Errorf("cancel won the race for %s but: row %+v, %d metrics rows, document %+v", run, r, results, d)
	}
	events := readEvents(t, w.runEvents(run))
	for _, e := range events {
		if e["event"] == "run.complete" && e["data"].(map[string]any)["status"] != "cancelled" {
			t.Errorf("cancelled run %s has a run.complete %v", run, e["data"])
		}
	}
}

func (w *world) assertSucceededRun(run, doc string, r jobRow, events string) {
	t := w.t
	t.Helper()
	var results int
	w.query(&results, `SELECT COUNT(*) FROM run_metrics WHERE run_id = ?`, run)
	if d := w.documentState(doc); r.Status != "succeeded" || results != 1 || d.Status != "processed" {
		t.Errorf("the run won the race for %s but: row %+v, %d metrics rows, document %+v", run, r, results, d)
	}
	last := readEventsEndingWith(t, events, "run.complete")
	if e := last[len(last)-1]; e["event"] != "run.complete" || e["data"].(map[string]any)["status"] != "succeeded" {
		t.Errorf("succeeded run %s ends with %v %v", run, e["event"], e["data"])
	}
}

// docState is what a run may change on its document.
type docState struct {
	Status  string
	Version int
	Changes int
}

func (w *world) documentState(doc string) docState {
	var d docState
	w.query(&d, `SELECT status, version, (SELECT COUNT(*) FROM document_changes WHERE document_id = ?) AS changes
		FROM documents WHERE id = ?`, doc, doc)
	return d
}

// waitForCancelledEvent waits for the events file to end with the terminal
// event of status "cancelled".
func (w *world) waitForCancelledEvent(path, name string) {
	t := w.t
	t.Helper()
	waitUntil(t, 30*time.Second, name+` "cancelled" at the end of `+path, func() bool {
		if !lastEventIs(path, name) {
			return false
		}
		events := readEvents(t, path)
		data, _ := events[len(events)-1]["data"].(map[string]any)
		return data["status"] == "cancelled"
	})
}

// assertCancelLog checks that supervisor i logged the cancel as a cancel.
func (w *world) assertCancelLog(i int) {
	w.t.Helper()
	// Logged once the job's processes are gone, which may be after the
	// row and the events file the caller waited for.
	w.waitForLogLine(i, "job cancelled", 30*time.Second)
	if log := w.supervisorLog(i); strings.Contains(log, "lease lost") {
		w.t.Errorf("supervisor log reports a cancel as a lost lease")
	}
}

// waitGone waits until timeout after since for every pid to be dead and
// returns how long after since that was; it fails the test (and kills them) when they outlive it.
func waitGone(t *testing.T, since time.Time, timeout time.Duration, pids []int) time.Duration {
	t.Helper()
	assertGone(t, timeout-time.Since(since), pids)
	return time.Since(since)
}

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// endJob writes a finished outcome on a job the way a supervisor would have,
// ended ago.
func (w *world) endRun(id, status, errMsg string, ago time.Duration) {
	w.t.Helper()
	at := w.ts(time.Now().Add(-ago))
	w.exec(`UPDATE runs SET status = ?, error_message = ?, attempt_count = 3, exit_code = 1, started_at = ?, completed_at = ? WHERE id = ?`,
		status, errMsg, at, at, id)
}

// TestRetryByID: a failed run is queued again as a new series of attempts
// with its history in its events file; queued and succeeded runs are
// refused; a run whose build failed waits for the build's retry.
func TestRetryByID(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, nil)
		cfg := w.addConfig("")
		build := w.addBuild(cfg)
		w.exec(`UPDATE builds SET status = 'ready' WHERE id = ?`, build)
		run := w.addRun(cfg, w.addDocument("a.csv", csv()), "--build", build)
		w.endRun(run, "failed", "engine exploded", time.Hour)

		out := w.supervisor("retry", "run", run)
		if !strings.Contains(out, run+" queued again (it was failed: engine exploded)") {
			t.Errorf("retry run: %q", out)
		}
		r := w.job("runs", run)
		if r.Status != "queued" || r.AttemptCount != 0 || r.ErrorMessage != nil || r.ExitCode != nil || r.ClaimedBy != nil {
			t.Errorf("retried run = %+v, want queued, 0 attempts, no error, exit code or claim", r)
		}
		if d := time.Since(r.AvailableAt.Time); d < -time.Minute || d > time.Minute {
			t.Errorf("available_at = %s, want now", r.AvailableAt.Time)
		}
		ev := findEvent(t, readEvents(t, w.runEvents(run)), "run.retry")
		data := obj(ev["data"])
		if data["previous_error"] != "engine exploded" || data["previous_status"] != "failed" || data["previous_attempts"] != float64(3) ||
			!strings.Contains(data["retried_by"].(string), "@") || data["retried_at"] == "" || data["jobId"] != run {
			t.Errorf("run.retry event = %v", ev)
		}

		// Refused: queued (the retried run) and succeeded.
		done := w.addRun(cfg, w.addDocument("b.csv", csv()), "--build", build)
		w.endRun(done, "succeeded", "", time.Minute)
		for id, was := range map[string]string{run: "queued", done: "succeeded"} {
			_, stderr, err := w.try("retry", "run", id)
			if err == nil || !strings.Contains(stderr, "run "+id+" is "+was+": only failed or cancelled jobs can be retried") {
				t.Errorf("retry of a %s run: err %v, stderr %q", was, err, stderr)
			}
		}

		// A run of a failed build: refused until the build is retried.
		w.exec(`UPDATE builds SET status = 'failed', error_message = 'pip failed', finished_at = ? WHERE id = ?`, w.ts(time.Now()), build)
		orphan := w.addRun(cfg, w.addDocument("c.csv", csv()), "--build", build)
		w.endRun(orphan, "failed", "Build failed before run could start", time.Minute)
		_, stderr, err := w.try("retry", "run", orphan)
		if err == nil || !strings.Contains(stderr, "its build "+build+" is failed") || !strings.Contains(stderr, "supervisor retry build "+build) {
			t.Errorf("retry of a run whose build failed: err %v, stderr %q", err, stderr)
		}
		if r := w.job("runs", orphan); r.Status != "failed" {
			t.Errorf("refused run changed: %+v", r)
		}
		var res struct {
			Jobs []struct {
				ID, Status string
				RetriedAt  string `json:"retried_at"`
				Retried    bool
			}
		}
		if err := json.Unmarshal([]byte(w.supervisor("retry", "build", "--json", build)), &res); err != nil ||
			len(res.Jobs) != 1 || !res.Jobs[0].Retried || res.Jobs[0].Status != "failed" || res.Jobs[0].RetriedAt == "" {
			t.Errorf("retry build --json = %+v (%v)", res, err)
		}
		if b := w.job("builds", build); b.Status != "queued" || b.AttemptCount != 0 || b.ErrorMessage != nil {
			t.Errorf("retried build = %+v", b)
		}
		w.supervisor("retry", "run", orphan)
		if r := w.job("runs", orphan); r.Status != "queued" {
			t.Errorf("run retried after its build = %+v", r)
		}
	})
}

// TestRetryRunsBulk: the filters select runs, --dry-run and no --yes change
// nothing, --yes retries exactly the listed ones.
func TestRetryRunsBulk(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, nil)
		cfg := w.addConfig("")
		runs := map[string]string{}
		for name, end := range map[string]struct {
			err string
			ago time.Duration
		}{
			"recent lease": {"Run lease expired", 10 * time.Minute},
			"recent disk":  {"No space left on device", 10 * time.Minute},
			"old lease":    {"Run lease expired", 72 * time.Hour},
		} {
			id := w.addRun(cfg, w.addDocument(strings.ReplaceAll(name, " ", "-")+".csv", csv()))
			w.endRun(id, "failed", end.err, end.ago)
			runs[name] = id
		}
		list := func(args ...string) bulkResult {
			t.Helper()
			var res bulkResult
			out := w.supervisor(append([]string{"retry", "runs", "--json"}, args...)...)
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("retry runs --json %v: %v\n%s", args, err, out)
			}
			return res
		}
		for _, args := range [][]string{{"--error-contains", "LEASE exp", "--since", "1h"}, {"--error-contains", "lease", "--since", "1h", "--dry-run"}} {
			res := list(args...)
			if !res.DryRun || len(res.Runs) != 1 || res.Runs[0].ID != runs["recent lease"] || res.Retried != 0 {
				t.Errorf("retry runs %v = %+v, want a dry run listing the recent lease failure", args, res)
			}
		}
		if res := list("--workspace", "elsewhere"); len(res.Runs) != 0 {
			t.Errorf("--workspace elsewhere listed %+v", res.Runs)
		}
		if res := list("--configuration", cfg); len(res.Runs) != 3 {
			t.Errorf("--configuration %s listed %d runs, want 3", cfg, len(res.Runs))
		}
		for _, id := range runs {
			if r := w.job("runs", id); r.Status != "failed" {
				t.Fatalf("a listing changed run %s: %+v", id, r)
			}
		}
		res := list("--error-contains", "lease expired", "--yes")
		if res.DryRun || res.Retried != 2 || res.Refused != 0 {
			t.Errorf("retry runs --yes = %+v, want both lease failures retried", res)
		}
		for name, id := range runs {
			want := "queued"
			if name == "recent disk" {
				want = "failed"
			}
			if r := w.job("runs", id); r.Status != want {
				t.Errorf("%s run after the bulk retry = %+v, want %s", name, r, want)
			}
		}
		// A supervisor claims the retried runs like any queued run: these
		// have no build, so each fails again, on its first new attempt.
		w.supervisor("--exit-when-idle")
		for _, name := range []string{"recent lease", "old lease"} {
			if r := w.job("runs", runs[name]); r.Status != "failed" || r.AttemptCount != 1 || !strings.Contains(r.errText(), "Build is required") {
				t.Errorf("%s run after a supervisor pass = %+v (%s), want claimed once and failed for its missing build", name, r, r.errText())
			}
		}
		text := w.supervisor("retry", "runs", "--status", "failed")
		if !strings.Contains(text, "would retry") || !strings.Contains(text, runs["recent disk"]) || !strings.Contains(text, "add --yes") {
			t.Errorf("retry runs without --yes:\n%s", text)
		}
	})
}

type bulkResult struct {
	DryRun bool `json:"dry_run"`
	Runs   []struct {
		ID      string
		Retried bool
		Refused string
	}
	Retried, Refused int
}

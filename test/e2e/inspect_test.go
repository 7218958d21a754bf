package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// inspected is the part of `supervisor inspect --json` the tests check.
type inspected struct {
	Kind           string             `json:"kind"`
	ID             string             `json:"id"`
	Status         string             `json:"status"`
	AttemptCount   int                `json:"attempt_count"`
	MaxAttempts    int                `json:"max_attempts"`
	ClaimedBy      *string            `json:"claimed_by"`
	ClaimExpiresAt *string            `json:"claim_expires_at"`
	Times          map[string]*string `json:"times"`
	ExitCode       *int               `json:"exit_code"`
	ErrorMessage   *string            `json:"error_message"`
	Run            *struct {
		DocumentID  string  `json:"document_id"`
		BuildID     *string `json:"build_id"`
		BuildStatus *string `json:"build_status"`
	} `json:"run"`
	WhyNotRunning *struct {
		Reason  string  `json:"reason"`
		Message string  `json:"message"`
		Until   *string `json:"until"`
	} `json:"why_not_running"`
	Files []struct {
		Name   string `json:"name"`
		Path   string `json:"path"`
		Exists bool   `json:"exists"`
	} `json:"files"`
	Events struct {
		Path string `json:"path"`
		Last []struct {
			Event  string `json:"event"`
			Level  string `json:"level"`
			Fields map[string]string
		} `json:"last"`
	} `json:"events"`
}

func (w *world) inspect(id string) inspected {
	w.t.Helper()
	out := w.supervisor("inspect", "--json", id)
	var d inspected
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		w.t.Fatalf("inspect --json %s: %v\n%s", id, err, out)
	}
	return d
}

func (d inspected) file(name string) (path string, exists bool) {
	for _, f := range d.Files {
		if f.Name == name {
			return f.Path, f.Exists
		}
	}
	return "", false
}

// TestInspectTailAndStatus: `tail --follow` started before a run is claimed
// prints its events and exits 0 at run.complete; `inspect` then shows the
// row, files and last events; `tail --json` is the file byte for byte; a
// crashed run in backoff is explained; `status --json` matches the rows.
func TestInspectTailAndStatus(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_BACKOFF_BASE_SECONDS": "600", "ADE_WORKER_JOB_BACKOFF_MAX_SECONDS": "600"})
		w.stopAll()
		run := w.addRun(cfg, w.addDocument("ok.csv", csv()))
		follow := w.startTail("tail", "--follow", run)
		follow.waitStderr(t, "waiting for", time.Minute)
		w.start()
		code, stdout, stderr := follow.wait(t, 3*time.Minute)
		if code != 0 || !strings.Contains(stdout, "run.start") || !lastLineHas(stdout, "run.complete", "status=succeeded") {
			t.Fatalf("tail --follow: exit %d, stdout:\n%s\nstderr: %s\nwant exit 0 after printing run.complete", code, stdout, stderr)
		}

		d := w.inspect(run)
		eventsPath := w.runEvents(run)
		if d.Kind != "run" || d.Status != "succeeded" || d.AttemptCount != 1 || d.MaxAttempts != 3 || d.ExitCode == nil ||
			*d.ExitCode != 0 || d.Times["started_at"] == nil || d.Times["completed_at"] == nil || d.WhyNotRunning != nil ||
			d.Run == nil || d.Run.BuildID == nil || *d.Run.BuildID != build || *d.Run.BuildStatus != "ready" {
			t.Errorf("inspect = %+v, want succeeded after 1 of 3 attempts with exit 0 and build %s ready", d, build)
		}
		if p, ok := d.file("run folder"); p != w.runDir(run) || !ok {
			t.Errorf("run folder = %q (exists %v), want %s", p, ok, w.runDir(run))
		}
		if p, ok := d.file("events"); p != eventsPath || !ok || d.Events.Path != eventsPath {
			t.Errorf("events file = %q (exists %v), want %s", p, ok, eventsPath)
		}
		if p, ok := d.file("venv"); p != filepath.Join(w.buildDir(cfg, build), ".venv") || !ok {
			t.Errorf("venv = %q (exists %v)", p, ok)
		}
		last := d.Events.Last
		if n := len(last); n == 0 || n > 10 || last[n-1].Event != "run.complete" {
			t.Errorf("last events = %+v, want at most 10 ending in run.complete", last)
		}
		text := w.supervisor("inspect", run)
		for _, want := range []string{"run " + run + ": succeeded", "1 of 3", w.runDir(run), "run.complete", "status=succeeded"} {
			if !strings.Contains(text, want) {
				t.Errorf("inspect text lacks %q:\n%s", want, text)
			}
		}

		assertTail(t, w, run, eventsPath)
		assertBackoffExplained(t, w, cfg)
		assertStatusJSON(t, w)
	})
}

// assertTail: `tail --json` is the events file byte for byte and `tail`
// prints one readable line per event.
func assertTail(t *testing.T, w *world, run, eventsPath string) {
	t.Helper()
	file, err := os.ReadFile(eventsPath)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := w.try("tail", "--json", run)
	if err != nil || out != string(file) {
		t.Errorf("tail --json (err %v, stderr %s) differs from the events file:\n%s\nfile:\n%s", err, errOut, out, file)
	}
	readable := w.supervisor("tail", run)
	lines := strings.Split(readable, "\n")
	if len(lines) != bytes.Count(file, []byte("\n")) || strings.Contains(readable, "\x1b[") ||
		!strings.Contains(lines[0], "INFO") || !strings.Contains(lines[0], "run.start") {
		t.Errorf("tail printed %d lines for %d events, want one plain readable line each:\n%s",
			len(lines), bytes.Count(file, []byte("\n")), readable)
	}
	if two := strings.Split(w.supervisor("tail", "-n", "2", run), "\n"); len(two) != 2 || two[1] != lines[len(lines)-1] {
		t.Errorf("tail -n 2 = %q, want the last two lines", two)
	}
}

// assertBackoffExplained: a run whose engine crashed waits out its backoff,
// and inspect says until when.
func assertBackoffExplained(t *testing.T, w *world, cfg string) {
	t.Helper()
	run := w.addRun(cfg, w.addDocument("segv.csv", csv("segv")))
	deadline := time.Now().Add(2 * time.Minute)
	for r := w.job("runs", run); r.Status != "queued" || r.AttemptCount != 1; r = w.job("runs", run) {
		if time.Now().After(deadline) {
			t.Fatalf("crashed run = %+v, want queued after attempt 1", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	row := w.job("runs", run)
	d := w.inspect(run)
	why := d.WhyNotRunning
	if why == nil || why.Reason != "backoff" || why.Until == nil || !strings.Contains(why.Message, "in backoff until") {
		t.Fatalf("crashed run: why_not_running = %+v, want backoff", why)
	}
	until, err := time.Parse(time.RFC3339Nano, *why.Until)
	if err != nil || until.Sub(row.AvailableAt.Time).Abs() > time.Millisecond || time.Until(until) < 5*time.Minute {
		t.Errorf("backoff until %v, want available_at %v, about 10 minutes ahead", until, row.AvailableAt.Time)
	}
	if d.ErrorMessage == nil || !strings.Contains(*d.ErrorMessage, "SIGSEGV") {
		t.Errorf("error = %v, want the crash", d.ErrorMessage)
	}
	if n := len(d.Events.Last); n == 0 || d.Events.Last[n-1].Event != "run.requeued" {
		t.Errorf("last events = %+v, want run.requeued last", d.Events.Last)
	}
}

// assertStatusJSON: `status --json` holds the counts the tables hold.
func assertStatusJSON(t *testing.T, w *world) {
	t.Helper()
	var doc struct {
		Counts []struct {
			Kind, Status string
			Count        int
		}
		Recent []struct {
			Kind, ID, Status string
			AttemptCount     int    `json:"attempt_count"`
			CreatedAt        string `json:"created_at"`
		}
	}
	out := w.supervisor("status", "--json", "--limit", "50")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	for _, c := range doc.Counts {
		var n int
		w.query(&n, `SELECT COUNT(*) FROM `+c.Kind+`s WHERE status = ?`, c.Status)
		if n != c.Count {
			t.Errorf("status --json: %s %s = %d, table has %d", c.Kind, c.Status, c.Count, n)
		}
	}
	var runs, builds int
	w.query(&runs, `SELECT COUNT(*) FROM runs`)
	w.query(&builds, `SELECT COUNT(*) FROM builds`)
	if len(doc.Recent) != runs+builds {
		t.Errorf("status --json lists %d recent jobs, want %d", len(doc.Recent), runs+builds)
	}
	for _, j := range doc.Recent {
		table := map[string]string{"run": "runs", "build": "builds"}[j.Kind]
		if r := w.job(table, j.ID); r.Status != j.Status || r.AttemptCount != j.AttemptCount || j.CreatedAt == "" {
			t.Errorf("status --json %s %s = %+v, row %+v", j.Kind, j.ID, j, r)
		}
	}
}

// TestInspectExplainsQueuedRuns: with no supervisor running, inspect says why
// each queued run waits: for its build, for a failed build, attempts used up,
// or claimable; unknown ids fail clearly; tail of a queued run says there are
// no events yet.
func TestInspectExplainsQueuedRuns(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := worldWithBuild(t, backend, nil)
		waiting := w.addRun(cfg, w.addDocument("a.csv", csv()), "--build", build)
		usedUp := w.addRun(cfg, w.addDocument("b.csv", csv()), "--build", build)
		claimable := w.addRun(cfg, w.addDocument("c.csv", csv()), "--build", build)
		w.exec(`UPDATE runs SET attempt_count = 3, error_message = 'Engine crashed' WHERE id = ?`, usedUp)

		want := map[string][]string{
			waiting: {"waiting_for_build", "waiting for its build " + build + " (queued)"},
			usedUp:  {"attempts_used_up", "attempts used up (3 of 3)"},
		}
		for id, w2 := range want {
			assertWhy(t, w, id, w2[0], w2[1])
		}
		w.exec(`UPDATE builds SET status = 'ready' WHERE id = ?`, build)
		assertWhy(t, w, claimable, "claimable", "claimable now")
		w.exec(`UPDATE builds SET status = 'failed' WHERE id = ?`, build)
		assertWhy(t, w, waiting, "build_failed", "Build failed before run could start")
		bd := w.inspect(build)
		if bd.Kind != "build" || bd.Status != "failed" || bd.WhyNotRunning != nil {
			t.Errorf("inspect build = %+v", bd)
		}

		_, errOut, err := w.try("inspect", "no-such-job")
		if exit, _ := err.(*exec.ExitError); exit == nil || !strings.Contains(errOut, `no run or build with id "no-such-job"`) {
			t.Errorf("inspect of an unknown id: err %v, stderr %q; want a non-zero exit naming the id", err, errOut)
		}
		out, errOut, err := w.try("tail", waiting)
		if err != nil || out != "" || !strings.Contains(errOut, "no events yet") {
			t.Errorf("tail of a queued run: err %v, stdout %q, stderr %q; want exit 0 and a note", err, out, errOut)
		}
	})
}

func assertWhy(t *testing.T, w *world, id, reason, text string) {
	t.Helper()
	d := w.inspect(id)
	if d.Status != "queued" || d.WhyNotRunning == nil || d.WhyNotRunning.Reason != reason ||
		!strings.Contains(d.WhyNotRunning.Message, text) {
		t.Errorf("run %s: status %s, why_not_running %+v; want %s (%q)", id, d.Status, d.WhyNotRunning, reason, text)
	}
	if out := w.supervisor("inspect", id); !strings.Contains(out, "why not running") || !strings.Contains(out, text) {
		t.Errorf("inspect %s text lacks the reason %q:\n%s", id, text, out)
	}
}

func lastLineHas(out string, parts ...string) bool {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for _, p := range parts {
		if !strings.Contains(lines[len(lines)-1], p) {
			return false
		}
	}
	return true
}

// bgCommand is a supervisor subcommand running in the background.
type bgCommand struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startTail starts a supervisor subcommand without waiting for it; it is
// killed when the test ends.
func (w *world) startTail(args ...string) *bgCommand {
	w.t.Helper()
	b := &bgCommand{cmd: exec.Command(filepath.Join(binDir, "supervisor"), args...), done: make(chan error, 1)}
	b.cmd.Env, b.cmd.Dir = w.environ(), w.dir
	b.cmd.Stdout, b.cmd.Stderr = lockedWriter{&b.mu, &b.stdout}, lockedWriter{&b.mu, &b.stderr}
	if err := b.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	w.t.Cleanup(func() { _ = b.cmd.Process.Kill() })
	return b
}

func (b *bgCommand) output() (string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stdout.String(), b.stderr.String()
}

func (b *bgCommand) waitStderr(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if _, errOut := b.output(); strings.Contains(errOut, text) {
			return
		}
		if time.Now().After(deadline) {
			out, errOut := b.output()
			t.Fatalf("no %q on stderr after %s; stdout %q, stderr %q", text, timeout, out, errOut)
		}
	}
}

// wait waits for the command to exit and returns its exit code and output.
func (b *bgCommand) wait(t *testing.T, timeout time.Duration) (int, string, string) {
	t.Helper()
	select {
	case err := <-b.done:
		out, errOut := b.output()
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode(), out, errOut
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out, errOut
	case <-time.After(timeout):
		out, errOut := b.output()
		t.Fatalf("still running after %s; stdout:\n%s\nstderr: %s", timeout, out, errOut)
		return 0, "", ""
	}
}

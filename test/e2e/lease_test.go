package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/supervisor"
)

// ---------------------------------------------------------------------------
// One clock, recovery in seconds, self-fencing jobrunners, the SQLite file

// settingsOf reads the world's settings (plus extra variables) the way the
// supervisor binary does, through the CLI flags.
func (w *world) settingsOf(extra map[string]string) *settings.Settings {
	w.t.Helper()
	env := map[string]string{}
	for k, v := range w.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	args := []string{"supervisor"}
	for _, f := range settings.Flags() {
		ef, ok := f.(interface{ GetEnvVars() []string })
		if !ok {
			continue
		}
		for _, name := range ef.GetEnvVars() {
			if v, ok := env[name]; ok {
				args = append(args, "--"+f.Names()[0]+"="+v)
				break
			}
		}
	}
	var cfg *settings.Settings
	app := &cli.App{Flags: settings.Flags(), Action: func(c *cli.Context) (err error) {
		cfg, err = settings.FromCLI(c)
		return err
	}}
	if err := app.Run(args); err != nil {
		w.t.Fatalf("settings: %v", err)
	}
	return cfg
}

// startSkewed runs a supervisor in this process whose wall clock is skew
// off; it stops when the test ends.
func (w *world) startSkewed(workerID string, skew time.Duration) {
	w.t.Helper()
	cfg := w.settingsOf(map[string]string{"ADE_WORKER_ID": workerID})
	logFile, err := os.Create(filepath.Join(w.dir, "skewed.log"))
	if err != nil {
		w.t.Fatal(err)
	}
	log := zerolog.New(logFile).With().Timestamp().Str("worker_id", workerID).Logger()
	sup := supervisor.New(cfg, w.st, log, filepath.Join(binDir, "jobrunner"),
		supervisor.WithClock(func() time.Time { return time.Now().Add(skew) }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	w.t.Cleanup(func() {
		cancel()
		sup.StopNow()
		if err := <-done; err != nil {
			w.t.Errorf("skewed supervisor: %v", err)
		}
		logFile.Close()
		if w.t.Failed() {
			data, _ := os.ReadFile(logFile.Name())
			w.t.Logf("skewed supervisor log:\n%s", data)
		}
	})
}

// TestClockSkewChangesNothing: a supervisor whose clock is hours off claims
// new work at once, honours back-off, and never takes a job another
// supervisor is running: every time the queue uses is the database's.
func TestClockSkewChangesNothing(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{3 * time.Hour, -3 * time.Hour} {
		t.Run(fmt.Sprintf("skew %v", skew), func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, backend string) {
				w, cfg, _ := readyWorld(t, backend, map[string]string{
					"ADE_WORKER_JOB_LEASE_SECONDS": "6", "ADE_WORKER_CONCURRENCY": "1"})
				// The honest supervisor holds a long run, over the quick
				// run on the skewed one. No wait depends on the lease.
				long := w.addRun(cfg, w.addDocument("long.csv", csv("sleep=6")))
				w.waitForStatus("runs", []string{long}, time.Minute, "running")
				w.startSkewed("skewed", skew)

				// New work is claimed at once (by the skewed one: the
				// other's only slot is busy).
				quick := w.addRun(cfg, w.addDocument("quick.csv", csv()))
				r := w.waitForStatus("runs", []string{quick}, time.Minute)[quick]
				if r.Status != "succeeded" || r.ClaimedBy == nil || *r.ClaimedBy != "skewed" {
					t.Errorf("quick run = %+v (%s), want succeeded by the skewed supervisor", r, r.errText())
				}

				// Back-off: a run available in 5 s (as the API or a retry
				// writes it) starts no earlier and soon after.
				waiting, err := w.st.EnqueueRun(context.Background(), store.NewRun{WorkspaceID: w.ws, ConfigurationID: cfg,
					DocumentID: w.addDocument("later.csv", csv()), MaxAttempts: 3, AvailableAt: time.Now().Add(5 * time.Second)}, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				r = w.waitForStatus("runs", []string{waiting}, time.Minute)[waiting]
				var early, late bool
				w.query(&early, `SELECT started_at < available_at FROM runs WHERE id = ?`, waiting)
				w.query(&late, `SELECT started_at > `+w.plus("available_at", 10)+` FROM runs WHERE id = ?`, waiting)
				if r.Status != "succeeded" || early || late {
					t.Errorf("run in back-off = %+v (%s); started before available_at %v, over 10 s after %v", r, r.errText(), early, late)
				}

				// The honest supervisor's run was never taken from it.
				r = w.waitForStatus("runs", []string{long}, time.Minute)[long]
				if r.Status != "succeeded" || r.AttemptCount != 1 || r.ClaimedBy == nil || *r.ClaimedBy == "skewed" {
					t.Errorf("long run = %+v (%s), want succeeded at attempt 1 by the other supervisor", r, r.errText())
				}
			})
		})
	}
}

// plus is the SQL for a timestamp column plus secs seconds.
func (w *world) plus(col string, secs int) string {
	if w.backend == "sqlite" {
		return fmt.Sprintf(`(strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '+%d seconds') || '000')`, col, secs)
	}
	return fmt.Sprintf(`(%s + interval '%d seconds')`, col, secs)
}

// TestCrashedHostRecoversInSeconds: with the default lease, back-off and
// cleanup settings, a run whose supervisor was SIGKILLed starts again on
// another supervisor within 30 s.
func TestCrashedHostRecoversInSeconds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		defaults := map[string]string{"ADE_WORKER_CLEANUP_INTERVAL": "30", "ADE_WORKER_JOB_BACKOFF_BASE_SECONDS": "5",
			"ADE_WORKER_POLL_INTERVAL": "0.5", "ADE_WORKER_POLL_INTERVAL_MAX": "2.0"}
		w, cfg, _ := readyWorld(t, backend, defaults)
		run := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=120")))
		w.waitEngine(run)
		w.start()
		crashed := w.sups[0]
		kill(t, crashed)
		killed := time.Now()
		waitUntil(t, 60*time.Second, "the run's second attempt", func() bool {
			return w.job("runs", run).AttemptCount == 2 && len(w.engineProcs(run)) > 0
		})
		took := time.Since(killed)
		t.Logf("run started again %s after its supervisor was killed", took.Round(time.Millisecond))
		if took > 30*time.Second {
			t.Errorf("run started again %s after the crash, want within 30 s", took.Round(time.Millisecond))
		}
	})
}

// faultFrozenSupervisorFencesItself: a supervisor stopped (SIGSTOP) mid-run
// for longer than the lease: its jobrunner kills the engine before the lease
// lapses, another supervisor runs the job, never two engines at once, the
// run ends once, and after SIGCONT the old supervisor writes nothing.
func faultFrozenSupervisorFencesItself(t *testing.T, backend string) {
	record := filepath.Join(t.TempDir(), "invocations.log")
	// The frozen supervisor writes as little as it can (one slot, so no
	// claim polls while its run runs; rare cleanups): a SQLite writer
	// stopped inside a transaction holds the database's lock, and the
	// other supervisor could then write nothing until it is thawed.
	w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "2",
		"ADE_WORKER_ENV_PASSTHROUGH": "ADE_TEST_ENGINE_RECORD", "ADE_TEST_ENGINE_RECORD": record,
		"ADE_WORKER_SANDBOX_WRITE": filepath.Dir(record),
		"ADE_WORKER_CONCURRENCY":   "1", "ADE_WORKER_CLEANUP_INTERVAL": "30"})
	frozen := w.sups[0]
	// Three leases: the frozen supervisor's lease runs out mid-run.
	doc := w.addDocument("slow.csv", csv("sleep=6"))
	run := w.addRun(cfg, doc)
	w.waitEngine(run)
	// The supervisor that takes over holds a longer lease: on a loaded
	// machine a 2 s lease may lapse under its own run.
	w.env["ADE_WORKER_JOB_LEASE_SECONDS"] = "6"
	w.start()
	signal(t, frozen, syscall.SIGSTOP)
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = frozen.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)

	// Until the run ends: never two engines of it alive at once.
	var seen []int
	deadline := time.Now().Add(3 * time.Minute)
	for st := "running"; st != "succeeded" && st != "failed" && time.Now().Before(deadline); st = w.job("runs", run).Status {
		procs := w.engineProcs(run)
		if len(procs) > 1 {
			t.Errorf("two engines of one run alive at once: %v", describe(procs))
		}
		for _, p := range procs {
			if !containsInt(seen, p) {
				seen = append(seen, p)
			}
		}
		if !thawed && w.job("runs", run).AttemptCount == 2 && len(procs) == 1 {
			thaw() // the other supervisor runs it now
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := w.waitForStatus("runs", []string{run}, time.Minute)[run]
	if r.Status != "succeeded" || r.AttemptCount != 2 || r.ClaimedBy == nil || !strings.Contains(w.supervisorLog(1), *r.ClaimedBy) {
		t.Errorf("run = %+v (%s), want succeeded at attempt 2 by the second supervisor", r, r.errText())
	}
	if len(seen) != 2 {
		t.Errorf("engine processes seen: %v, want 2 (one per attempt)", seen)
	}
	assertEachRunRecorded(t, record, run, 2)
	events := readEventsEndingWith(t, w.runEvents(run), "run.complete")
	assertEventCount(t, events, "run.complete", 1)
	// The thawed supervisor saw its lease gone and wrote nothing: the
	// document moved processing, processing, processed, and its log
	// has no outcome for the run.
	if d := w.documentState(doc); d.Changes != 3 {
		t.Errorf("document changes = %d, want 3", d.Changes)
	}
	waitUntil(t, 30*time.Second, "the thawed supervisor to notice", func() bool {
		return strings.Contains(w.supervisorLog(0), "lease")
	})
	for _, line := range strings.Split(w.supervisorLog(0), "\n") {
		if strings.Contains(line, run) && (strings.Contains(line, "job re-queued") || strings.Contains(line, "job finished")) {
			t.Errorf("the thawed supervisor wrote about the run: %s", line)
		}
	}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// assertEachRunRecorded checks how often the engine was invoked for run.
func assertEachRunRecorded(t *testing.T, record, run string, want int) {
	t.Helper()
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("engine invocation record: %v", err)
	}
	if got := strings.Count(string(data), string(filepath.Separator)+run+string(filepath.Separator)); got != want {
		t.Errorf("engine invoked %d times for the run, want %d:\n%s", got, want, data)
	}
}

// TestSQLiteFileReplaced: a supervisor whose database file is deleted or
// replaced says so in one error line, stops, and exits non-zero.
func TestSQLiteFileReplaced(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"deleted", "replaced"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, "sqlite", nil)
			sup := w.start()
			path := strings.TrimPrefix(w.env["ADE_DATABASE_URL"], "sqlite:///")
			waitUntil(t, 30*time.Second, "the supervisor to start", func() bool {
				return strings.Contains(w.supervisorLog(0), "supervisor started")
			})
			if how == "deleted" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".new", data, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(path+".new", path); err != nil {
					t.Fatal(err)
				}
			}
			took, err := waitExit(sup, 60*time.Second)
			var exit interface{ ExitCode() int }
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Errorf("supervisor exit = %v after %s, want a non-zero exit status", err, took)
			}
			log := w.supervisorLog(0)
			if n := strings.Count(log, "ERR"); n != 1 || !strings.Contains(log, how) || !strings.Contains(log, path) {
				t.Errorf("want one error line naming the file and saying it was %s; log:\n%s", how, log)
			}
			t.Logf("supervisor exited %s after the file was %s", took.Round(time.Millisecond), how)
		})
	}
}

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJobLimits: a job that exceeds one of its limits is killed and failed
// with a message naming the limit; a job within the limits, run by the same
// supervisor, succeeds.
func TestJobLimits(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{
			"ADE_WORKER_JOB_MEMORY_MB":      "400",
			"ADE_WORKER_JOB_MAX_PROCESSES":  "8",
			"ADE_WORKER_JOB_MAX_OPEN_FILES": "64",
			"ADE_WORKER_JOB_MAX_OUTPUT_MB":  "5",
			"ADE_WORKER_JOB_MAX_ATTEMPTS":   "1",
		})
		cases := map[string]struct{ directive, want string }{
			"memory":    {"alloc-mb=1000", "memory limit of 400 MB (ADE_WORKER_JOB_MEMORY_MB)"},
			"processes": {"spawn=20", "process limit of 8 processes and threads (ADE_WORKER_JOB_MAX_PROCESSES)"},
			"files":     {"open-files=200", "open-files limit of 64 (ADE_WORKER_JOB_MAX_OPEN_FILES)"},
			"file size": {"write-mb=20", "output limit of 5 MB (ADE_WORKER_JOB_MAX_OUTPUT_MB)"},
			"console":   {"hugeline-stderr=8", "printed more than the output limit of 5 MB"},
		}
		runs := map[string]string{}
		for name, c := range cases {
			runs[name] = w.addRun(cfg, w.addDocument(strings.ReplaceAll(name, " ", "-")+".csv", csv(c.directive)))
		}
		good := w.addRun(cfg, w.addDocument("good.csv", csv("alloc-mb=50", "spawn=3", "open-files=20", "write-mb=2")))
		ids := []string{good}
		for _, id := range runs {
			ids = append(ids, id)
		}
		rows := w.waitForStatus("runs", ids, 2*time.Minute)
		for name, c := range cases {
			r := rows[runs[name]]
			if r.Status != "failed" || !strings.Contains(r.errText(), c.want) {
				t.Errorf("%s: run = %+v (%q), want failed naming %q", name, r, r.errText(), c.want)
			}
		}
		if r := rows[good]; r.Status != "succeeded" {
			t.Errorf("run within the limits = %+v (%s)", r, r.errText())
		}
	})
}

// TestDetachedDaemonDoesNotOutliveItsJob: a daemon the engine detached into
// its own session is killed when the job ends.
func TestDetachedDaemonDoesNotOutliveItsJob(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, nil)
		run := w.addRun(cfg, w.addDocument("d.csv", csv("daemon=120")))
		if r := w.waitForStatus("runs", []string{run}, time.Minute)[run]; r.Status != "succeeded" {
			t.Fatalf("run = %+v (%s)", r, r.errText())
		}
		data, err := os.ReadFile(filepath.Join(w.runDir(run), "output", "daemon.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		deadline := time.Now().Add(3 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if pid == 0 || alive(pid) {
			t.Errorf("daemon %d outlived its job", pid)
		}
	})
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// TestManySupervisorsRunEachJobOnce: several supervisors share one queue and
// every run is executed by the engine exactly once. It queues 200 runs per
// database; ADE_TEST_MANY_RUNS sets another number (2000 is the old load).
func TestManySupervisorsRunEachJobOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		backend     string
		supervisors int
	}{
		{"postgres", 3},
		{"sqlite", 2}, // WAL: no "database is locked" may reach a job
	}
	runs := 200
	if v := os.Getenv("ADE_TEST_MANY_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ADE_TEST_MANY_RUNS=%q: want a positive number of runs", v)
		}
		runs = n
	}
	for _, tc := range cases {
		t.Run(tc.backend, func(t *testing.T) {
			t.Parallel()
			record := filepath.Join(t.TempDir(), "invocations.log")
			w := newWorld(t, tc.backend, map[string]string{
				"ADE_WORKER_CONCURRENCY":      "4",
				"ADE_WORKER_ENV_PASSTHROUGH":  "ADE_TEST_ENGINE_RECORD",
				"ADE_TEST_ENGINE_RECORD":      record,
				"ADE_WORKER_SANDBOX_WRITE":    filepath.Dir(record),
				"ADE_WORKER_LOG_LEVEL":        "WARNING",
				"ADE_WORKER_CLEANUP_INTERVAL": "5",
			})
			cfg := w.addConfig("")
			build := w.addBuild(cfg)
			w.installReadyBuild(cfg, build)
			ids := w.enqueueMany(cfg, build, runs)
			for i := 0; i < tc.supervisors; i++ {
				w.start()
			}
			rows := w.waitForStatus("runs", ids, 10*time.Minute)
			for id, r := range rows {
				if r.Status != "succeeded" {
					t.Errorf("run %s = %+v (%s)", id, r, r.errText())
				}
			}
			assertEachRunOnce(t, record, ids)
			for _, log := range w.supervisorLogs() {
				if strings.Contains(log, "database is locked") {
					t.Errorf("a supervisor logged 'database is locked'")
				}
			}
		})
	}
}

// enqueueMany inserts n documents (sharing one stored file) and their runs
// through the store, as the ADE API would, much faster than n processes.
func (w *world) enqueueMany(cfg, build string, n int) []string {
	w.t.Helper()
	docDir := filepath.Join(w.dir, "workspaces", w.ws, "documents")
	if err := os.MkdirAll(docDir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(docDir, "shared.csv"), []byte(csv()), 0o644); err != nil {
		w.t.Fatal(err)
	}
	ctx, now := context.Background(), time.Now()
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		doc := store.NewID()
		err := w.st.InsertDocument(ctx, store.NewDocument{ID: doc, WorkspaceID: w.ws, OriginalFilename: fmt.Sprintf("doc-%d.csv", i),
			StoredURI: "shared.csv", Sha256: "x", ByteSize: 1}, now)
		if err != nil {
			w.t.Fatal(err)
		}
		id, err := w.st.EnqueueRun(ctx, store.NewRun{WorkspaceID: w.ws, ConfigurationID: cfg, DocumentID: doc, BuildID: build, MaxAttempts: 3}, now)
		if err != nil {
			w.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// assertEachRunOnce reads the engine's invocation record: one line per
// invocation, naming the staged input under the run's folder.
func assertEachRunOnce(t *testing.T, record string, ids []string) {
	t.Helper()
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("engine invocation record: %v", err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// <runs>/<ws>/runs/<run>/input/<file>
		run := filepath.Base(filepath.Dir(filepath.Dir(line)))
		counts[run]++
	}
	for _, id := range ids {
		if counts[id] != 1 {
			t.Errorf("run %s: engine invoked %d times, want exactly 1", id, counts[id])
		}
		delete(counts, id)
	}
	if len(counts) > 0 {
		t.Errorf("engine invoked for unknown runs: %v", counts)
	}
}

// supervisorLogs returns the logs of every supervisor the world started.
func (w *world) supervisorLogs() []string {
	var logs []string
	for i := range w.sups {
		data, _ := os.ReadFile(filepath.Join(w.dir, fmt.Sprintf("supervisor-%d.log", i)))
		logs = append(logs, string(data))
	}
	return logs
}

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWorkspaceCapAcrossSupervisors: 3 supervisors of 4 slots share 200
// runs of 4 workspaces under ADE_WORKER_WORKSPACE_MAX_RUNNING=2. Sampled
// from the database throughout, no workspace ever has more than 2 runs
// running; the runs over the cap stay queued (never failed, never retried)
// while other workspaces' runs run; inspect of one says why it waits; and
// every run succeeds.
func TestWorkspaceCapAcrossSupervisors(t *testing.T) {
	t.Parallel()
	const limit = 2
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, map[string]string{
			"ADE_WORKER_CONCURRENCY":           "4",
			"ADE_WORKER_WORKSPACE_MAX_RUNNING": "2",
			"ADE_WORKER_LOG_LEVEL":             "WARNING",
			"ADE_WORKER_CLEANUP_INTERVAL":      "5",
		})
		home := w.ws
		var ids []string
		workspaceOf := map[string]string{} // run -> workspace
		// The big workspace outlasts the others (20 rounds of 2 at 0.3 s
		// against 10), so samples see it held at its cap while they run.
		sizes := []int{40, 20, 12, 8}
		var spaces []string
		for i, n := range sizes {
			w.ws = home + "-" + string(rune('a'+i))
			spaces = append(spaces, w.ws)
			cfg := w.addConfig("")
			build := w.addBuild(cfg)
			w.installReadyBuild(cfg, build)
			got := w.enqueueMany(cfg, build, n)
			// Each run lasts long enough that the cap, not the slots, holds
			// the big workspaces back.
			shared := filepath.Join(w.dir, "workspaces", w.ws, "documents", "shared.csv")
			if err := os.WriteFile(shared, []byte(csv("sleep=0.3")), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, id := range got {
				workspaceOf[id] = w.ws
			}
			ids = append(ids, got...)
		}
		w.ws = home
		for range 3 {
			w.start()
		}

		type sample struct {
			WorkspaceID string
			Status      string
			N           int
		}
		peak := map[string]int{}
		samples, heldWhileOthersRan := 0, 0
		var inspected string
		for deadline := time.Now().Add(5 * time.Minute); ; {
			var rows []sample
			w.query(&rows, `SELECT workspace_id, status, COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running', 'failed')
				GROUP BY workspace_id, status`)
			samples++
			running, queued, total := map[string]int{}, map[string]int{}, 0
			for _, r := range rows {
				switch r.Status {
				case "running":
					running[r.WorkspaceID] = r.N
					peak[r.WorkspaceID] = max(peak[r.WorkspaceID], r.N)
					total += r.N
				case "queued":
					queued[r.WorkspaceID] = r.N
				case "failed":
					t.Fatalf("%d runs of workspace %s failed while the cap held them", r.N, r.WorkspaceID)
				}
			}
			for ws, n := range running {
				if n > limit {
					t.Errorf("sample %d: workspace %s has %d runs running, cap %d", samples, ws, n, limit)
				}
			}
			big := spaces[0]
			if running[big] == limit && queued[big] > 0 && total > limit {
				heldWhileOthersRan++
				if inspected == "" {
					inspected = w.inspectQueuedRunOf(big)
				}
			}
			if len(running)+len(queued) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("runs still queued or running after 5 minutes: running %v, queued %v", running, queued)
			}
			time.Sleep(20 * time.Millisecond) // the sampling rate, not a wait for a condition
		}
		t.Logf("%d samples; peak running per workspace %v; %d samples with the big workspace at its cap while others ran",
			samples, peak, heldWhileOthersRan)

		rows := w.waitForStatus("runs", ids, time.Minute)
		for id, r := range rows {
			if r.Status != "succeeded" || r.AttemptCount != 1 {
				t.Errorf("run %s of workspace %s = %+v (%s), want succeeded at its first attempt", id, workspaceOf[id], r, r.errText())
			}
		}
		for _, ws := range spaces[:2] {
			if peak[ws] != limit {
				t.Errorf("workspace %s peaked at %d runs running, want the cap %d: the test did not load the cap", ws, peak[ws], limit)
			}
		}
		if heldWhileOthersRan == 0 {
			t.Errorf("no sample saw the big workspace at its cap with runs queued while other workspaces' runs ran")
		}
		want := "workspace " + spaces[0] + " has 2 of 2 runs running"
		if !strings.Contains(inspected, want) {
			t.Errorf("inspect of a run held by the cap does not say %q:\n%s", want, inspected)
		}
	})
}

// inspectQueuedRunOf runs `supervisor inspect` on a queued run of workspace
// ws and returns its output, trying a few times: the run or the count may
// change between the query and the inspect. It returns the last output.
func (w *world) inspectQueuedRunOf(ws string) string {
	w.t.Helper()
	var out string
	for range 10 {
		var id string
		w.query(&id, `SELECT id FROM runs WHERE workspace_id = ? AND status = 'queued' ORDER BY created_at DESC LIMIT 1`, ws)
		if id == "" {
			return out
		}
		out = w.supervisor("inspect", id)
		if strings.Contains(out, "of 2 runs running") && strings.Contains(out, "has 2 of 2") {
			return out
		}
	}
	return out
}

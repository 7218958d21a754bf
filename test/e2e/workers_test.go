package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

type workersDoc struct {
	Workers []workerJSON
}

type workerJSON struct {
	WorkerID         string  `json:"worker_id"`
	Host             string  `json:"host"`
	PID              int     `json:"pid"`
	Version          string  `json:"version"`
	LastSeenAt       *string `json:"last_seen_at"`
	SecondsSinceSeen float64 `json:"seconds_since_seen"`
	Concurrency      int     `json:"concurrency"`
	JobsHeld         int     `json:"jobs_held"`
	Draining         bool    `json:"draining"`
	State            string  `json:"state"`
	Leader           bool    `json:"leader"`
}

func (w *world) workers() map[string]workerJSON {
	w.t.Helper()
	var doc workersDoc
	out := w.supervisor("workers", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		w.t.Fatalf("workers --json: %v\n%s", err, out)
	}
	byID := map[string]workerJSON{}
	for _, r := range doc.Workers {
		byID[r.WorkerID] = r
	}
	return byID
}

// waitWorker polls `supervisor workers --json` until ok holds for the row
// of id (absent rows are the zero value) and returns it.
func (w *world) waitWorker(id string, timeout time.Duration, ok func(workerJSON) bool) workerJSON {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := w.workers()[id]
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("supervisor %s: row %+v did not reach the wanted state within %s", id, r, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWorkersTable: a running supervisor lists itself; SIGKILLed, it shows
// as gone within one lease, and inspect of a job it held shows its row;
// stopped cleanly, its row goes.
func TestWorkersTable(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		const lease = 2 * time.Second
		w := newWorld(t, backend, map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "2", "ADE_WORKER_ID": "sup-killed"})
		killed := w.start()
		host, _ := os.Hostname()
		r := w.waitWorker("sup-killed", 30*time.Second, func(r workerJSON) bool { return r.State == "up" })
		if r.PID != killed.Process.Pid || r.Host != host || r.Concurrency != 2 || r.JobsHeld != 0 || r.Draining || r.Version == "" || r.LastSeenAt == nil {
			t.Errorf("row of a running supervisor = %+v, want pid %d on %s, concurrency 2, nothing held", r, killed.Process.Pid, host)
		}
		// Refreshed with the heartbeat: last seen stays within a heartbeat or two.
		time.Sleep(lease) // let several heartbeats pass
		if r := w.workers()["sup-killed"]; r.State != "up" || r.SecondsSinceSeen > lease.Seconds()/2 {
			t.Errorf("row after a lease of heartbeats = %+v, want seen within half a lease", r)
		}

		if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = killed.Wait()
		killedAt := time.Now()
		w.waitWorker("sup-killed", 10*time.Second, func(r workerJSON) bool { return r.State == "gone" })
		if took := time.Since(killedAt); took > lease+time.Second {
			t.Errorf("a SIGKILLed supervisor showed as gone after %s, want within one lease (%s)", took, lease)
		}

		// A job it held, as the rows show it before the rescue.
		cfg := w.addConfig("")
		run := w.addRun(cfg, w.addDocument("held.csv", csv()))
		w.exec(`UPDATE runs SET status = 'running', claimed_by = 'sup-killed', attempt_count = 1, claim_expires_at = ?, started_at = ? WHERE id = ?`,
			w.ts(time.Now().Add(time.Hour)), w.ts(time.Now()), run)
		var doc struct{ Worker *workerJSON }
		if err := json.Unmarshal([]byte(w.supervisor("inspect", "--json", run)), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Worker == nil || doc.Worker.WorkerID != "sup-killed" || doc.Worker.State != "gone" || doc.Worker.PID != r.PID {
			t.Errorf("inspect --json of a run held by the killed supervisor: worker = %+v", doc.Worker)
		}
		if text := w.supervisor("inspect", run); !strings.Contains(text, "sup-killed on "+host) || !strings.Contains(text, "gone") {
			t.Errorf("inspect of a run held by the killed supervisor does not show its row:\n%s", text)
		}

		// A clean stop removes the row.
		w.env["ADE_WORKER_ID"] = "sup-clean"
		clean := w.start()
		w.waitWorker("sup-clean", 30*time.Second, func(r workerJSON) bool { return r.State == "up" })
		w.stop(clean)
		if _, ok := w.workers()["sup-clean"]; ok {
			t.Errorf("a supervisor stopped cleanly left its row")
		}
		if text := w.supervisor("workers"); !strings.Contains(text, "sup-killed") || !strings.Contains(text, "gone") {
			t.Errorf("workers:\n%s", text)
		}
	})
}

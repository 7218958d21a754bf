package e2e

import (
	"strings"
	"testing"
)

// TestHandBacksAreBounded: a run longer than the shutdown grace, its
// supervisor SIGTERMed again and again (more times than it has attempts),
// is handed back for free ADE_WORKER_MAX_HANDBACKS times, then each
// hand-back counts an attempt, and once they are used up it fails: it ends
// exactly once, and its events tell each hand-back.
func TestHandBacksAreBounded(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{
			"ADE_WORKER_SHUTDOWN_GRACE_SECONDS": "1",
			"ADE_WORKER_JOB_MAX_ATTEMPTS":       "2",
			"ADE_WORKER_MAX_HANDBACKS":          "2",
		})
		run := w.addRun(cfg, w.addDocument("long.csv", csv("sleep=300")))
		// Free, free, counted (attempt 1 kept), then attempt 2 of 2: failed.
		wantAttempts := []int{0, 0, 1}
		var r jobRow
		for i := 0; i < 6; i++ {
			w.waitEngine(run)
			w.stop(w.sups[len(w.sups)-1])
			if r = w.job("runs", run); r.Status != "queued" {
				break
			}
			if i >= len(wantAttempts) || r.AttemptCount != wantAttempts[i] {
				t.Fatalf("after hand-back %d: %+v, want queued at attempt %v", i+1, r, wantAttempts)
			}
			w.startAndWaitForStartedLine()
		}
		if r.Status != "failed" || r.AttemptCount != 2 || !strings.Contains(r.errText(), "Handed back at shutdown 4 times") ||
			!strings.Contains(r.errText(), "ADE_WORKER_MAX_HANDBACKS") {
			t.Fatalf("run after repeated SIGTERMs = %+v (%s), want failed at attempt 2 naming 4 hand-backs and the setting", r, r.errText())
		}
		events := readEventsEndingWith(t, w.runEvents(run), "run.complete")
		var requeued, counted, completes int
		for _, e := range events {
			d, _ := e["data"].(map[string]any)
			switch e["event"] {
			case "run.requeued":
				if d["handed_back"] == true {
					requeued++
				}
				if d["attempt_counted"] == true {
					counted++
				}
			case "run.complete":
				completes++
				if d["status"] != "failed" {
					t.Errorf("run.complete status %v, want failed", d["status"])
				}
			}
		}
		if requeued != 3 || counted != 1 || completes != 1 {
			t.Errorf("events: %d hand-backs (%d counted), %d run.complete; want 3 (1), 1", requeued, counted, completes)
		}
	})
}

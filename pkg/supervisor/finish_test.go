package supervisor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// fakeFinal records the final-state writes of one job.
type fakeFinal struct {
	err           error // what writeFinal returns
	writes, after int
}

func (w *fakeFinal) writeFinal(context.Context, zerolog.Logger, ending) error {
	w.writes++
	return w.err
}

func (w *fakeFinal) afterFinal(context.Context, zerolog.Logger, ending) { w.after++ }

// TestFinishFinalStates covers the one end path of runs and builds for the
// endings that need no database: the final write, its follow-up, the
// metrics outcome and the terminal event.
func TestFinishFinalStates(t *testing.T) {
	cases := []struct {
		name        string
		kind        store.Kind
		e           ending
		writeErr    error
		wantAfter   int
		wantOutcome string
		wantEvent   string // "" for none
		wantMessage string
		wantStatus  string
	}{
		{"run succeeded", store.KindRun, ending{succeeded: true, code: intp(0)}, nil, 1,
			telemetry.OutcomeSucceeded, "run.complete", "Run succeeded", "succeeded"},
		{"build ready", store.KindBuild, ending{succeeded: true, code: intp(0)}, nil, 1,
			telemetry.OutcomeSucceeded, "build.complete", "Build ready", "ready"},
		{"build failed", store.KindBuild, ending{code: intp(3), message: "boom"}, nil, 1,
			telemetry.OutcomeFailed, "build.complete", "Build failed", "failed"},
		{"run timed out", store.KindRun, ending{code: intp(jobspec.CodeTimeout), message: "slow"}, nil, 1,
			telemetry.OutcomeTimedOut, "run.complete", "Run failed", "failed"},
		{"final write finds the run cancelled", store.KindRun, ending{succeeded: true, code: intp(0)}, errCancelled, 0,
			telemetry.OutcomeCancelled, "run.complete", "Run cancelled", "cancelled"},
		{"final write finds the lease lost", store.KindRun, ending{succeeded: true, code: intp(0)}, store.ErrLeaseLost, 0,
			telemetry.OutcomeLeaseLost, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := &jobspec.Spec{Kind: tc.kind, JobID: "j1", EventsPath: filepath.Join(dir, "logs", "events.ndjson"),
				Roots: jobspec.Roots{Runs: dir, Venvs: dir}}
			l := newLease(store.Fence{Kind: tc.kind, ID: "j1", Worker: "w", Attempt: 1}, time.Minute, time.Now())
			w := &fakeFinal{err: tc.writeErr}
			(&Supervisor{}).finish(context.Background(), zerolog.Nop(), l, spec, w, tc.e, time.Now())
			if w.writes != 1 || w.after != tc.wantAfter {
				t.Errorf("writes %d, follow-ups %d; want 1, %d", w.writes, w.after, tc.wantAfter)
			}
			if got := l.outcomeOf(); got != tc.wantOutcome {
				t.Errorf("outcome = %s, want %s", got, tc.wantOutcome)
			}
			events, _ := eventlog.ReadAll(spec.EventsPath)
			if tc.wantEvent == "" {
				if len(events) != 0 {
					t.Errorf("events after a lost lease: %v", events)
				}
				return
			}
			if len(events) != 1 {
				t.Fatalf("events = %v, want one %s", events, tc.wantEvent)
			}
			ev := events[0]
			data, _ := ev["data"].(map[string]any)
			if ev["event"] != tc.wantEvent || ev["message"] != tc.wantMessage || data["status"] != tc.wantStatus {
				t.Errorf("event = %v, want %s %q with status %s", ev, tc.wantEvent, tc.wantMessage, tc.wantStatus)
			}
		})
	}
}

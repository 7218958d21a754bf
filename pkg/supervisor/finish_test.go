package supervisor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
	"github.com/ade-org/ade-worker/test/eventfile"
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
	type want struct {
		after                           int    // follow-ups run
		outcome, event, message, status string // event "" for none
	}
	cases := []struct {
		name     string
		kind     store.Kind
		e        ending
		writeErr error
		row      store.Status // the job's row as a re-read finds it
		want
	}{
		{"run succeeded", store.KindRun, ending{event: store.EventSucceed, code: intp(0)}, nil, "",
			want{1, telemetry.OutcomeSucceeded, "run.complete", "Run succeeded", "succeeded"}},
		{"build ready", store.KindBuild, ending{event: store.EventSucceed, code: intp(0)}, nil, "",
			want{1, telemetry.OutcomeSucceeded, "build.complete", "Build ready", "ready"}},
		{"build failed", store.KindBuild, ending{event: store.EventFail, code: intp(3), message: "boom"}, nil, "",
			want{1, telemetry.OutcomeFailed, "build.complete", "Build failed", "failed"}},
		{"run timed out", store.KindRun, ending{event: store.EventFail, code: intp(jobspec.CodeTimeout), message: "slow"}, nil, "",
			want{1, telemetry.OutcomeTimedOut, "run.complete", "Run failed", "failed"}},
		{"final write finds the run cancelled", store.KindRun, ending{event: store.EventSucceed, code: intp(0)}, store.ErrLeaseLost, store.StatusCancelled,
			want{0, telemetry.OutcomeCancelled, "run.complete", "Run cancelled", "cancelled"}},
		{"final write finds the lease lost", store.KindRun, ending{event: store.EventSucceed, code: intp(0)}, store.ErrLeaseLost, store.StatusQueued,
			want{0, telemetry.OutcomeLeaseLost, "", "", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := &jobspec.Spec{Kind: tc.kind, JobID: "j1", EventsPath: filepath.Join(dir, "logs", "events.ndjson"),
				Roots: jobspec.Roots{Runs: dir, Venvs: dir}}
			l := newLease(store.Fence{Kind: tc.kind, ID: "j1", Worker: "w", Attempt: 1}, time.Minute, time.Now())
			w := &fakeFinal{err: tc.writeErr}
			(&Supervisor{queue: &fakeQueue{status: tc.row}}).finish(context.Background(), zerolog.Nop(), l, spec, w, tc.e, time.Now())
			if w.writes != 1 || w.after != tc.after {
				t.Errorf("writes %d, follow-ups %d; want 1, %d", w.writes, w.after, tc.after)
			}
			if got := l.outcomeOf(); got != tc.outcome {
				t.Errorf("outcome = %s, want %s", got, tc.outcome)
			}
			events, _ := eventfile.ReadAll(spec.EventsPath)
			if tc.event == "" {
				if len(events) != 0 {
					t.Errorf("events after a lost lease: %v", events)
				}
				return
			}
			if len(events) != 1 {
				t.Fatalf("events = %v, want one %s", events, tc.event)
			}
			ev := events[0]
			data, _ := ev["data"].(map[string]any)
			if ev["event"] != tc.event || ev["message"] != tc.message || data["status"] != tc.status {
				t.Errorf("event = %v, want %s %q with status %s", ev, tc.event, tc.message, tc.status)
			}
		})
	}
}

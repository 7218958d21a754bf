package supervisor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// These tests cover the supervisor's decisions without a database, Python
// or child processes.

func intp(i int) *int { return &i }

func TestDecide(t *testing.T) {
	s := &Supervisor{}
	ok := &jobspec.Result{Status: jobspec.StatusSucceeded}
	engineFailed := &jobspec.Result{Status: jobspec.StatusFailed, Reason: jobspec.ReasonEngineFailed, ExitCode: 3, Error: "Engine failed"}
	hostFault := &jobspec.Result{Status: jobspec.StatusFailed, Reason: jobspec.ReasonEnvironment, ExitCode: 1, Error: "Engine crashed", Retryable: true}
	cancelled := &jobspec.Result{Status: jobspec.StatusFailed, Reason: jobspec.ReasonCancelled, ExitCode: 1, Error: "stopped", Retryable: true}
	noResult := childOutcome{exit: procs.Exit{Code: -1, Signal: 9}, problem: "jobrunner killed by signal without a result"}
	cases := []struct {
		name    string
		attempt int
		out     childOutcome
		want    ending
	}{
		{"success", 1, childOutcome{result: ok}, ending{event: store.EventSucceed, code: intp(0), result: ok}},
		{"engine failure is final on the first attempt", 1, childOutcome{result: engineFailed},
			ending{event: store.EventFail, code: intp(3), message: "Engine failed", result: engineFailed}},
		{"no result is retried while attempts remain", 1, noResult, ending{event: store.EventRetryLater, message: noResult.problem}},
		{"no result on the last attempt fails with code 1", 3, noResult,
			ending{event: store.EventFail, code: intp(jobspec.CodeGenericFailure), message: noResult.problem + " (gave up after 3 attempts)"}},
		{"retryable result is retried", 2, childOutcome{result: hostFault}, ending{event: store.EventRetryLater, message: "Engine crashed", result: hostFault}},
		{"retryable result on the last attempt keeps its code", 3, childOutcome{result: hostFault},
			ending{event: store.EventFail, code: intp(1), message: "Engine crashed (gave up after 3 attempts)", result: hostFault}},
		{"shutdown without a result hands back", 3, childOutcome{stopped: true, problem: "killed"},
			ending{event: store.EventHandBack, message: "Worker shut down; job handed back"}},
		{"shutdown that cancelled the job hands back", 3, childOutcome{stopped: true, result: cancelled},
			ending{event: store.EventHandBack, message: "Worker shut down; job handed back"}},
		{"a job that finished just before the shutdown keeps its outcome", 1, childOutcome{stopped: true, result: ok},
			ending{event: store.EventSucceed, code: intp(0), result: ok}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := store.Fence{Kind: store.KindRun, ID: "r1", Worker: "w", Attempt: tc.attempt}
			got := s.decide(f, 3, tc.out)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("decide = %s, want %s", showEnding(got), showEnding(tc.want))
			}
		})
	}
}

func showEnding(e ending) string {
	code := "nil"
	if e.code != nil {
		code = fmt.Sprint(*e.code)
	}
	return fmt.Sprintf("{event:%s code:%s message:%q result:%v}", e.event, code, e.message, e.result != nil)
}

func TestParseRunOptions(t *testing.T) {
	cases := []struct {
		name, raw, sheets string
		want              jobspec.RunOptions
		err               string // part of the error; "" for none
	}{
		{"empty", "", "", jobspec.RunOptions{}, ""},
		{"null", "null", "null", jobspec.RunOptions{}, ""},
		{"all options", `{"log_level":"DEBUG","input_sheet_names":["A"],"active_sheet_only":true,"validate_only":true,"dry_run":true}`, "",
			jobspec.RunOptions{LogLevel: "debug", InputSheetNames: []string{"A"}, ActiveSheetOnly: true, ValidateOnly: true, DryRun: true}, ""},
		{"unknown keys are ignored", `{"other": 1}`, "", jobspec.RunOptions{}, ""},
		{"column input_sheet_names wins", `{"input_sheet_names":["A"]}`, `["B","C"]`, jobspec.RunOptions{InputSheetNames: []string{"B", "C"}}, ""},
		{"empty column list keeps the option's", `{"input_sheet_names":["A"]}`, `[]`, jobspec.RunOptions{InputSheetNames: []string{"A"}}, ""},
		{"bad JSON", `{"dry_run":`, "", jobspec.RunOptions{}, "invalid run_options JSON"},
		{"wrong type", `{"dry_run":"yes"}`, "", jobspec.RunOptions{}, "invalid run_options JSON"},
		{"sheets not a list", "", `"Sheet1"`, jobspec.RunOptions{}, "invalid input_sheet_names JSON"},
		{"unknown log level", `{"log_level":"loud"}`, "", jobspec.RunOptions{}, `invalid run_options log_level "loud"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRunOptions(tc.raw, tc.sheets)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("options = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseRunOptionsLongInputIsCut(t *testing.T) {
	_, err := parseRunOptions("{"+strings.Repeat("x", 500), "")
	if err == nil || len(err.Error()) > 400 || !strings.Contains(err.Error(), "…") {
		t.Fatalf("err = %v, want a message that quotes at most 200 bytes of the value", err)
	}
}

func TestCheckRunRows(t *testing.T) {
	run := &store.ClaimedRun{ID: "r1", WorkspaceID: "ws", ConfigurationID: "c1", InputDocumentID: "d1",
		BuildID: sql.NullString{String: "b1", Valid: true}}
	ready := &store.Build{ID: "b1", ConfigurationID: "c1", Status: "ready"}
	config := &store.Configuration{ID: "c1", WorkspaceID: "ws"}
	doc := &store.Document{ID: "d1", WorkspaceID: "ws"}
	full := store.RunContext{Configuration: config, Document: doc, Build: ready}
	with := func(edit func(*store.RunContext)) *store.RunContext {
		rc := full
		edit(&rc)
		return &rc
	}
	dry, validate := jobspec.RunOptions{DryRun: true}, jobspec.RunOptions{ValidateOnly: true}
	cases := []struct {
		name string
		rc   *store.RunContext
		opts jobspec.RunOptions
		code int    // 0: no rejection
		msg  string // part of the message
	}{
		{"all rows there", &full, jobspec.RunOptions{}, 0, ""},
		{"build row missing", with(func(rc *store.RunContext) { rc.Build = nil }), dry, jobspec.CodeMissingBuild, "Build is required before running (build b1 does not exist)"},
		{"build not ready", with(func(rc *store.RunContext) { rc.Build = &store.Build{ID: "b1", ConfigurationID: "c1", Status: "failed"} }), jobspec.RunOptions{},
			jobspec.CodeMissingBuild, "(build b1 is failed)"},
		{"build of another configuration", with(func(rc *store.RunContext) { rc.Build = &store.Build{ID: "b1", ConfigurationID: "c2", Status: "ready"} }), jobspec.RunOptions{},
			jobspec.CodeGenericFailure, "build b1 belongs to configuration c2, not to the run's configuration c1"},
		{"dry run needs no configuration or document", &store.RunContext{Build: ready}, dry, 0, ""},
		{"configuration missing", with(func(rc *store.RunContext) { rc.Configuration = nil }), validate, jobspec.CodeGenericFailure, "configuration c1 does not exist"},
		{"validate_only needs no document", with(func(rc *store.RunContext) { rc.Document = nil }), validate, 0, ""},
		{"document missing", with(func(rc *store.RunContext) { rc.Document = nil }), jobspec.RunOptions{}, jobspec.CodeGenericFailure, "input document d1 does not exist"},
		{"document of another workspace", with(func(rc *store.RunContext) { rc.Document = &store.Document{ID: "d1", WorkspaceID: "other"} }), jobspec.RunOptions{},
			jobspec.CodeGenericFailure, "input document d1 belongs to another workspace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rej := checkRunRows(run, tc.rc, tc.opts)
			if tc.code == 0 {
				if rej != nil {
					t.Fatalf("rejected: %v", rej)
				}
				return
			}
			if rej == nil || rej.Code != tc.code || !strings.Contains(rej.Message, tc.msg) {
				t.Fatalf("rejection = %+v, want code %d and a message containing %q", rej, tc.code, tc.msg)
			}
		})
	}
}

// flakyWrite fails its first n calls with err.
type flakyWrite struct {
	n     int
	err   error
	calls int
}

func (w *flakyWrite) write() error {
	w.calls++
	if w.calls <= w.n {
		return w.err
	}
	return nil
}

func TestPersist(t *testing.T) {
	down := errors.New("connection refused")
	ms := time.Millisecond
	cases := []struct {
		name      string
		failures  int
		err       error
		leaseLeft time.Duration
		wantErr   error
		calls     int
		sleeps    []time.Duration
	}{
		{"lands at once", 0, down, time.Hour, nil, 1, nil},
		{"lands after three failures, doubling the wait", 3, down, time.Hour, nil, 4, []time.Duration{100 * ms, 200 * ms, 400 * ms}},
		{"the wait stops growing at five seconds", 8, down, time.Hour, nil, 9,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms}},
		{"a lost lease ends at once", 5, store.ErrLeaseLost, time.Hour, store.ErrLeaseLost, 1, nil},
		// The heartbeat keeps the lease while the supervisor stops: a write
		// whose context ended must not wait for the lease to run out.
		{"a write whose context ended stops at once", 5, fmt.Errorf("read the run's rows: %w", context.Canceled), time.Hour, context.Canceled, 1, nil},
		// A lease with 2.5 s left: the next wait of 3.2 s would outlast it.
		{"gives up when the next wait would outlast the lease", 100, down, 2500 * ms, down, 6,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var slept []time.Duration
			s := &Supervisor{obs: telemetry.Nop{}, queue: &fakeQueue{status: "running"},
				waits: tick.Retry{Sleep: func(d time.Duration) { slept = append(slept, d) }, Rand: func() float64 { return 0 }}}
			l := newLease(store.Fence{Kind: store.KindRun, ID: "r1"}, tc.leaseLeft, time.Now())
			w := &flakyWrite{n: tc.failures, err: tc.err}
			err := s.persist(zerolog.Nop(), l, "run outcome", w.write)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("persist = %v, want %v", err, tc.wantErr)
			}
			if errors.Is(err, store.ErrLeaseLost) && !strings.Contains(err.Error(), "run outcome") {
				t.Errorf("persist = %v, want the write named", err)
			}
			if w.calls != tc.calls || !reflect.DeepEqual(slept, tc.sleeps) {
				t.Errorf("writes = %d, sleeps = %v; want %d and %v", w.calls, slept, tc.calls, tc.sleeps)
			}
		})
	}
}

// TestPersistJitters: each wait is shortened by up to 20%, by the random
// draw (here one half: 10%).
func TestPersistJitters(t *testing.T) {
	var slept []time.Duration
	s := &Supervisor{obs: telemetry.Nop{}, waits: tick.Retry{Sleep: func(d time.Duration) { slept = append(slept, d) },
		Rand: func() float64 { return 0.5 }}}
	l := newLease(store.Fence{Kind: store.KindRun, ID: "r1"}, time.Hour, time.Now())
	w := &flakyWrite{n: 3, err: errors.New("connection refused")}
	if err := s.persist(zerolog.Nop(), l, "run outcome", w.write); err != nil {
		t.Fatal(err)
	}
	ms := time.Millisecond
	if want := []time.Duration{90 * ms, 180 * ms, 360 * ms}; !reflect.DeepEqual(slept, want) {
		t.Errorf("sleeps = %v, want %v", slept, want)
	}
}

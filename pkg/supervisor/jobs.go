package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/summary"
)

// ending is the supervisor's decision about a job whose child has ended.
type ending struct {
	retry     bool // re-queue with backoff
	handBack  bool // re-queue now, attempt not counted (shutdown)
	succeeded bool
	code      *int
	message   string
	result    *jobspec.Result
}

// decide maps a child's outcome to what gets written.
func (s *Supervisor) decide(f store.Fence, maxAttempts int, out childOutcome) ending {
	switch {
	case out.stopped && (out.result == nil || out.result.Reason == jobspec.ReasonCancelled):
		// Stopped by the shutdown; a job that finished just before it keeps
		// its real outcome.
		return ending{handBack: true, message: "Worker shut down; job handed back"}
	case out.result == nil:
		return s.retryOrFail(f, maxAttempts, out.problem, jobspec.CodeGenericFailure, nil)
	case out.result.Retryable:
		return s.retryOrFail(f, maxAttempts, out.result.Error, out.result.ExitCode, out.result)
	}
	r := out.result
	code := r.ExitCode
	return ending{succeeded: r.Status == jobspec.StatusSucceeded, code: &code, message: r.Error, result: r}
}

func (s *Supervisor) retryOrFail(f store.Fence, maxAttempts int, msg string, code int, r *jobspec.Result) ending {
	if f.Attempt < maxAttempts {
		return ending{retry: true, message: msg, result: r}
	}
	return ending{code: &code, message: fmt.Sprintf("%s (gave up after %d attempts)", msg, f.Attempt), result: r}
}

// requeue writes a retry or a hand-back.
func (s *Supervisor) requeue(ctx context.Context, log zerolog.Logger, l *lease, e ending) error {
	delay := time.Duration(0)
	if e.retry {
		delay = s.cfg.Backoff(l.fence.Attempt)
	}
	err := s.persist(log, l, "requeue", func() error {
		return s.store.Requeue(ctx, l.fence, time.Now().Add(delay), e.message, e.retry)
	})
	if err != nil {
		return err
	}
	log.Warn().Str("error", e.message).Float64("retry_in_s", delay.Seconds()).Bool("attempt_counted", e.retry).Msg("job re-queued")
	return nil
}

// appendEvent writes one worker event to a job's events file after the
// database holds the outcome it describes.
func appendEvent(log zerolog.Logger, spec *jobspec.Spec, level, event, message string, data map[string]any) {
	if spec == nil {
		return
	}
	l, err := eventlog.Open(spec.EventsPath, eventlog.Context{JobID: spec.JobID, WorkspaceID: spec.WorkspaceID,
		BuildID: spec.BuildID, ConfigurationID: spec.ConfigurationID}, eventlog.Options{})
	if err == nil {
		err = l.Emit(level, event, message, data)
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		log.Warn().Err(err).Str("event", event).Msg("cannot append to events file")
	}
}

func terminalData(status string, code *int, message string, attempt int) map[string]any {
	data := map[string]any{"status": status, "exit_code": code, "attempt": attempt}
	if message != "" {
		data["error"] = message
	}
	return data
}

// logEnd writes the one line every finished job gets.
func logEnd(log zerolog.Logger, status string, code *int, message string, started time.Time) {
	ev := log.Info()
	if status != "succeeded" && status != "ready" {
		ev = log.Warn()
	}
	if code != nil {
		ev = ev.Int("exit_code", *code)
	}
	if message != "" {
		ev = ev.Str("error", message)
	}
	ev.Str("status", status).Float64("duration_ms", float64(time.Since(started).Microseconds())/1000).Msg("job finished")
}

// runJob is a claimed run.
type runJob struct {
	s     *Supervisor
	row   store.ClaimedRun
	lease *lease
}

func (j *runJob) claim() *lease { return j.lease }

func (j *runJob) execute(ctx context.Context, log zerolog.Logger) {
	s, f, started := j.s, j.lease.fence, time.Now()
	var plan *RunPlan
	err := s.persist(log, j.lease, "read the run's rows", func() (err error) {
		plan, err = s.planner.PlanRun(ctx, &j.row)
		return err
	})
	if err != nil {
		return // lease expiry re-queues the run
	}
	var e ending
	switch {
	case plan.Reject != nil:
		code := plan.Reject.Code
		e = ending{code: &code, message: plan.Reject.Message}
	case plan.Spec.Run.Options.DryRun:
		zero := 0
		e = ending{succeeded: true, code: &zero}
	default:
		if plan.DocumentID != "" {
			err := s.persist(log, j.lease, "document processing", func() error {
				return s.store.StartDocument(ctx, f, plan.DocumentID, time.Now())
			})
			if err != nil {
				return
			}
		}
		e = s.decide(f, j.row.MaxAttempts, s.runChild(ctx, log, j.lease, plan.Spec))
	}
	j.finish(context.WithoutCancel(ctx), log, plan, e, started)
}

func (j *runJob) finish(ctx context.Context, log zerolog.Logger, plan *RunPlan, e ending, started time.Time) {
	s, f := j.s, j.lease.fence
	if e.retry || e.handBack {
		if err := s.requeue(ctx, log, j.lease, e); err != nil {
			return
		}
		j.lease.ended(e)
		appendEvent(log, plan.Spec, "warning", "run.requeued", "Run re-queued: "+e.message, map[string]any{"attempt": f.Attempt, "error": e.message})
		return
	}
	o := store.RunOutcome{Succeeded: e.succeeded, ExitCode: e.code, Error: e.message}
	if e.result != nil && plan.DocumentID != "" {
		o.Summary, o.OutputPath = j.results(log, plan, e.result)
	}
	// The document follows the run whenever the run touched it.
	o.DocumentID = plan.DocumentID
	if err := s.persist(log, j.lease, "run outcome", func() error { return s.store.FinishRun(ctx, f, o, time.Now()) }); err != nil {
		return
	}
	j.lease.ended(e)
	if e.result != nil && e.result.Reason == jobspec.ReasonVenvMissing {
		if err := s.store.FailBuildEnvironmentMissing(ctx, plan.BuildID, time.Now()); err != nil {
			log.Error().Err(err).Msg("cannot mark the build failed")
		}
	}
	status := "failed"
	if e.succeeded {
		status = "succeeded"
	}
	logEnd(log, status, e.code, e.message, started)
	appendEvent(log, plan.Spec, levelFor(e.succeeded), "run.complete", "Run "+status, terminalData(status, e.code, e.message, f.Attempt))
}

// results parses the engine's summary into rows and the output path.
func (j *runJob) results(log zerolog.Logger, plan *RunPlan, r *jobspec.Result) (*summary.Summary, string) {
	if len(r.Summary) == 0 {
		return nil, ""
	}
	sum, err := summary.Parse(r.Summary)
	if err != nil {
		log.Warn().Err(err).Msg("engine summary unusable; no metrics stored")
		return nil, ""
	}
	out := ""
	if sum.OutputPath != "" {
		if rel, ok := summary.RelativeOutputPath(plan.Spec.Run.RunDir, sum.OutputPath); ok {
			out = rel
		}
	}
	return sum, out
}

func levelFor(ok bool) string {
	if ok {
		return "info"
	}
	return "error"
}

// buildJob is a claimed build.
type buildJob struct {
	s     *Supervisor
	row   store.ClaimedBuild
	lease *lease
}

func (j *buildJob) claim() *lease { return j.lease }

func (j *buildJob) execute(ctx context.Context, log zerolog.Logger) {
	s, f, started := j.s, j.lease.fence, time.Now()
	var (
		spec *jobspec.Spec
		rej  *Rejection
	)
	err := s.persist(log, j.lease, "read the build's rows", func() (err error) {
		spec, rej, err = s.planner.PlanBuild(ctx, &j.row)
		return err
	})
	if err != nil {
		return // lease expiry re-queues the build
	}
	var e ending
	if rej != nil {
		code := rej.Code
		e = ending{code: &code, message: rej.Message}
	} else {
		e = s.decide(f, j.row.MaxAttempts, s.runChild(ctx, log, j.lease, spec))
	}
	ctx = context.WithoutCancel(ctx)
	if e.retry || e.handBack {
		if err := s.requeue(ctx, log, j.lease, e); err != nil {
			return
		}
		j.lease.ended(e)
		appendEvent(log, spec, "warning", "build.requeued", "Build re-queued: "+e.message, map[string]any{"attempt": f.Attempt, "error": e.message})
		return
	}
	o := store.BuildOutcome{Succeeded: e.succeeded, ExitCode: e.code, Error: e.message}
	if r := e.result; r != nil && e.succeeded {
		o.Summary, o.EngineVersion, o.PythonVersion, o.PythonInterpreter = r.BuildSummary, r.EngineVersion, r.PythonVersion, r.PythonInterpreter
	}
	if err := s.persist(log, j.lease, "build outcome", func() error { return s.store.FinishBuild(ctx, f, o, time.Now()) }); err != nil {
		return
	}
	j.lease.ended(e)
	status := "ready"
	if !e.succeeded {
		status = "failed"
		// Its queued runs can never start: fail them now rather than at the
		// next cleanup.
		if _, err := s.store.FailRunsOfFailedBuilds(ctx, time.Now()); err != nil {
			log.Warn().Err(err).Msg("cannot fail the runs of the failed build; cleanup will")
		}
	} else {
		s.wake() // its runs are claimable now
	}
	logEnd(log, status, e.code, e.message, started)
	appendEvent(log, spec, levelFor(e.succeeded), "build.complete", "Build "+status, terminalData(status, e.code, e.message, f.Attempt))
}

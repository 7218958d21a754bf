package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/summary"
)

// runJob is a claimed run.
type runJob struct {
	s     *Supervisor
	row   store.ClaimedRun
	lease *lease
	plan  *Plan
}

func (j *runJob) claim() *lease { return j.lease }

func (j *runJob) execute(ctx context.Context, log zerolog.Logger) {
	s, f, started := j.s, j.lease.fence, time.Now()
	err := s.persist(log, j.lease, "read the run's rows", func() (err error) {
		j.plan, err = s.planner.PlanRun(ctx, &j.row)
		return err
	})
	if err != nil {
		s.handBackIfStopped(ctx, log, j.lease, nil, j, started)
		return // else lease expiry re-queues the run
	}
	plan := j.plan
	var e ending
	switch {
	case plan.Reject != nil:
		e = rejected(plan.Reject)
	case plan.Spec.Run.Options.DryRun:
		zero := 0
		e = ending{event: store.EventSucceed, code: &zero}
	default:
		if plan.DocumentID != "" {
			err := s.persist(log, j.lease, "document processing", func() error {
				return s.store.StartDocument(ctx, f, plan.DocumentID)
			})
			if errors.Is(err, store.ErrLeaseLost) && s.refused(log, j.lease, err) {
				s.endCancelled(log, j.lease, plan.Spec, started)
			}
			if err != nil {
				s.handBackIfStopped(ctx, log, j.lease, plan.Spec, j, started)
				return
			}
		}
		e = s.decide(f, j.row.MaxAttempts, s.runChild(ctx, log, j.lease, plan.Spec))
	}
	s.finish(context.WithoutCancel(ctx), log, j.lease, plan.Spec, j, e, started)
}

// writeFinal writes the run's final status, its results and its document's
// status.
func (j *runJob) writeFinal(ctx context.Context, log zerolog.Logger, e ending) error {
	plan := j.plan
	o := store.RunOutcome{Succeeded: e.succeeded(), ExitCode: e.code, Error: e.message}
	if e.result != nil && plan.DocumentID != "" {
		o.Summary, o.OutputPath = j.results(log, e.result)
	}
	// The document follows the run whenever the run touched it.
	o.DocumentID = plan.DocumentID
	return j.s.persist(log, j.lease, "run outcome", func() error { return j.s.store.FinishRun(ctx, j.lease.fence, o) })
}

// afterFinal fails the run's build when the run found its venv gone.
func (j *runJob) afterFinal(ctx context.Context, log zerolog.Logger, e ending) {
	if e.result != nil && e.result.Reason == jobspec.ReasonVenvMissing {
		if err := j.s.store.FailBuildEnvironmentMissing(ctx, j.plan.BuildID); err != nil {
			log.Error().Err(err).Msg("cannot mark the build failed")
		}
	}
}

// results parses the engine's summary into rows and the output path.
func (j *runJob) results(log zerolog.Logger, r *jobspec.Result) (*summary.Summary, string) {
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
		if rel, ok := summary.RelativeOutputPath(j.plan.Spec.Run.RunDir, sum.OutputPath); ok {
			out = rel
		}
	}
	return sum, out
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
	var plan *Plan
	err := s.persist(log, j.lease, "read the build's rows", func() (err error) {
		plan, err = s.planner.PlanBuild(ctx, &j.row)
		return err
	})
	if err != nil {
		s.handBackIfStopped(ctx, log, j.lease, nil, j, started)
		return // else lease expiry re-queues the build
	}
	var e ending
	if plan.Reject != nil {
		e = rejected(plan.Reject)
	} else {
		e = s.decide(f, j.row.MaxAttempts, s.runChild(ctx, log, j.lease, plan.Spec))
	}
	s.finish(context.WithoutCancel(ctx), log, j.lease, plan.Spec, j, e, started)
}

// writeFinal writes the build's final status; a ready build keeps what the
// jobrunner reported about its environment.
func (j *buildJob) writeFinal(ctx context.Context, log zerolog.Logger, e ending) error {
	o := store.BuildOutcome{Succeeded: e.succeeded(), ExitCode: e.code, Error: e.message}
	if r := e.result; r != nil && e.succeeded() {
		o.Summary, o.EngineVersion, o.PythonVersion, o.PythonInterpreter = r.BuildSummary, r.EngineVersion, r.PythonVersion, r.PythonInterpreter
	}
	return j.s.persist(log, j.lease, "build outcome", func() error { return j.s.store.FinishBuild(ctx, j.lease.fence, o) })
}

// afterFinal wakes the claim loop for a ready build's runs, or fails the
// queued runs of a failed build now rather than at the next cleanup.
func (j *buildJob) afterFinal(ctx context.Context, log zerolog.Logger, e ending) {
	if e.succeeded() {
		j.s.wake() // its runs are claimable now
		return
	}
	if _, err := j.s.store.FailRunsOfFailedBuilds(ctx); err != nil {
		log.Warn().Err(err).Msg("cannot fail the runs of the failed build; cleanup will")
	}
}

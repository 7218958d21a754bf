// Package supervisor is the long-running worker: it claims builds and runs,
// starts one jobrunner process per job, keeps the job's lease alive, enforces
// timeouts, and writes every outcome to the database.
package supervisor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// Supervisor runs the queue.
type Supervisor struct {
	cfg       *settings.Settings
	store     *store.Store
	log       zerolog.Logger
	planner   *Planner
	jobrunner string

	hardStop     chan struct{} // closed by StopNow
	hardStopOnce sync.Once

	// ExitWhenIdle makes Run return once no job is queued or running
	// anywhere (for batch use and demos).
	ExitWhenIdle bool

	// Observer is told about claims and job endings (metrics); set it
	// before Run. New sets telemetry.Nop.
	Observer telemetry.Observer
	obs      telemetry.Observer
	health   *telemetry.Health

	slots chan struct{} // one token per running job
	freed chan struct{} // a job ended: claim again without waiting
	jobs  sync.WaitGroup
}

// New makes a supervisor. jobrunner is the path of the jobrunner binary.
func New(cfg *settings.Settings, st *store.Store, log zerolog.Logger, jobrunner string) *Supervisor {
	return &Supervisor{
		cfg: cfg, store: st, log: log, jobrunner: jobrunner,
		planner:  &Planner{Settings: cfg, Store: st},
		slots:    make(chan struct{}, cfg.Concurrency),
		freed:    make(chan struct{}, 1),
		hardStop: make(chan struct{}),
		Observer: telemetry.Nop{},
		health:   newHealth(cfg.PollIntervalMax),
	}
}

// StopNow ends the shutdown grace early: running jobs are stopped at once
// and their claims handed back. It is safe to call more than once.
func (s *Supervisor) StopNow() {
	s.hardStopOnce.Do(func() { close(s.hardStop) })
}

// Run works the queue until ctx ends, then stops claiming, gives running jobs
// the shutdown grace to finish, stops the rest and hands their claims back.
func (s *Supervisor) Run(ctx context.Context) error {
	s.obs = s.Observer
	if s.obs == nil {
		s.obs = telemetry.Nop{}
	}
	if err := s.store.CheckMigrated(ctx); err != nil {
		s.health.Set(telemetry.CondSchema, false, err.Error())
		return err
	}
	s.health.Set(telemetry.CondSchema, true, "migrated")
	s.log.Info().Str("worker_id", s.cfg.WorkerID).Int("concurrency", s.cfg.Concurrency).
		Str("database", s.store.Dialect()).Msg("supervisor started")

	// Jobs get their own context: ending ctx stops claiming, not the jobs.
	jobsCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	var services sync.WaitGroup
	services.Add(4)
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	go func() { defer services.Done(); s.every(loopCtx, s.cfg.CleanupInterval, s.cleanup) }()
	go func() { defer services.Done(); s.every(loopCtx, s.cfg.MetricsInterval, s.logQueue) }()
	go func() { defer services.Done(); s.probe(loopCtx); s.every(loopCtx, probeEvery, s.probe) }()
	s.health.Set(telemetry.CondWakeups, true, "instant wake-ups on")
	go func() {
		defer services.Done()
		s.store.WatchQueue(loopCtx, s.wakeupsUp, func(err error) {
			s.wakeupsDown(err)
			s.log.Warn().Err(err).Msg("instant wake-ups unavailable; polling until they are back")
		})
	}()

	s.cleanup(ctx)
	s.claimLoop(loopCtx, jobsCtx)
	s.health.Draining()
	stopLoop() // also stops the services when the loop ended by itself
	services.Wait()
	s.drain(stopJobs)
	return nil
}

// claimLoop claims while there are free slots. Idle polling backs off from
// the poll interval to its max and snaps back as soon as work appears.
func (s *Supervisor) claimLoop(ctx, jobsCtx context.Context) {
	interval := s.cfg.PollInterval
	outage := &outageLog{log: s.log, what: "claims"}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		s.health.Tick()
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.freed:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		free := cap(s.slots) - len(s.slots)
		claimed := 0
		if free > 0 {
			var err error
			claimed, err = s.claim(ctx, jobsCtx, free)
			if ctx.Err() == nil {
				outage.report(err)
				if err != nil {
					s.obs.DBError("claim")
				}
			}
		}
		switch {
		case claimed > 0:
			interval = s.cfg.PollInterval
			if claimed == free {
				// Every slot is busy: the next chance is when a job ends.
				timer.Reset(s.cfg.PollIntervalMax)
				continue
			}
		case free > 0:
			interval = min(time.Duration(float64(interval)*1.5), s.cfg.PollIntervalMax)
			if s.ExitWhenIdle && len(s.slots) == 0 && s.idle(ctx) {
				s.log.Info().Msg("queue drained: nothing queued or running")
				return
			}
			timer.Reset(s.untilNextAvailable(ctx, interval))
			continue
		}
		timer.Reset(interval)
	}
}

// claim takes up to free jobs, builds first (runs wait on them), and starts
// each one.
func (s *Supervisor) claim(ctx, jobsCtx context.Context, free int) (int, error) {
	now := time.Now()
	builds, runs, err := s.store.ClaimJobs(ctx, s.cfg.WorkerID, now, s.buildLease(), s.runLease(), free, free)
	if err != nil {
		return 0, err
	}
	for _, b := range builds {
		f := store.Fence{Kind: store.KindBuild, ID: b.ID, Worker: s.cfg.WorkerID, Attempt: b.AttemptCount}
		s.start(jobsCtx, &buildJob{s: s, row: b, lease: newLease(f, s.buildLease(), now)}, laterOf(b.AvailableAt, b.CreatedAt))
	}
	for _, r := range runs {
		f := store.Fence{Kind: store.KindRun, ID: r.ID, Worker: s.cfg.WorkerID, Attempt: r.AttemptCount}
		s.start(jobsCtx, &runJob{s: s, row: r, lease: newLease(f, s.runLease(), now)}, laterOf(r.AvailableAt, r.CreatedAt))
	}
	return len(builds) + len(runs), nil
}

func (s *Supervisor) runLease() time.Duration   { return s.cfg.Lease(s.cfg.RunTimeout) }
func (s *Supervisor) buildLease() time.Duration { return s.cfg.Lease(s.cfg.BuildTimeout) }

// job is a claimed build or run.
type job interface {
	claim() *lease
	execute(ctx context.Context, log zerolog.Logger)
}

// laterOf is when a job became claimable: created, or available again.
func laterOf(a, b store.Time) time.Time {
	if a.Time.After(b.Time) {
		return a.Time
	}
	return b.Time
}

// start runs a claimed job in its own goroutine; readyAt (when it became
// claimable) gives the pickup latency that is logged.
func (s *Supervisor) start(ctx context.Context, j job, readyAt time.Time) {
	s.slots <- struct{}{}
	s.jobs.Add(1)
	f := j.claim().fence
	log := s.log.With().Str("kind", string(f.Kind)).Str("job_id", f.ID).Int("attempt", f.Attempt).Logger()
	log.Info().Float64("pickup_latency_ms", float64(time.Since(readyAt).Microseconds())/1000).Msg("job claimed")
	claimedAt := time.Now()
	s.obs.JobClaimed(string(f.Kind), claimedAt.Sub(readyAt))
	go func() {
		defer func() {
			s.obs.JobEnded(string(f.Kind), j.claim().outcomeOf(), time.Since(claimedAt))
			<-s.slots
			s.jobs.Done()
			select {
			case s.freed <- struct{}{}:
			default:
			}
		}()
		j.execute(ctx, log)
	}()
}

// drain waits for running jobs for the shutdown grace, then stops them; each
// stopped job hands its claim back itself.
func (s *Supervisor) drain(stopJobs context.CancelFunc) {
	done := make(chan struct{})
	go func() { s.jobs.Wait(); close(done) }()
	if n := len(s.slots); n > 0 {
		s.log.Info().Int("running", n).Dur("grace", s.cfg.ShutdownGrace).Msg("shutting down: waiting for running jobs")
	}
	grace := time.NewTimer(s.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		s.log.Warn().Int("running", len(s.slots)).Msg("shutdown grace over: stopping running jobs and handing their claims back")
	case <-s.hardStop:
	}
	stopJobs()
	<-done
	s.log.Info().Msg("supervisor stopped")
}

// untilNextAvailable shortens an idle sleep so that a job in retry backoff is
// claimed when its available_at comes, not at the next poll after it.
func (s *Supervisor) untilNextAvailable(ctx context.Context, sleep time.Duration) time.Duration {
	now := time.Now()
	next, ok, err := s.store.NextAvailable(ctx, now)
	if err != nil || !ok || !next.After(now) {
		// A "future" time in the past means a timestamp the database
		// compares differently than we read it: never spin on it.
		return sleep
	}
	return max(min(sleep, next.Sub(now)), time.Millisecond)
}

// idle reports whether no job is queued or running anywhere.
func (s *Supervisor) idle(ctx context.Context) bool {
	n, err := s.store.PendingJobs(ctx)
	return err == nil && n == 0
}

// every calls fn each interval until ctx ends.
func (s *Supervisor) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

func (s *Supervisor) cleanup(ctx context.Context) {
	res, err := s.store.Cleanup(ctx, time.Now(), s.cfg.Backoff, s.cfg.BuildTimeout)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.obs.DBError("cleanup")
			s.log.Error().Err(err).Msg("cleanup failed; will retry")
		}
		return
	}
	s.observeCleanup(res)
	if res.Changed() {
		s.log.Info().Int("runs_requeued", res.RunsRequeued).Int("runs_failed", res.RunsFailed).
			Int("builds_requeued", res.BuildsRequeued).Int("builds_failed", res.BuildsFailed).
			Int("runs_failed_by_build", res.RunsFailedByBuild).Msg("cleanup recovered jobs")
		s.wake()
	}
}

// outageLog reports a database outage once when it starts, every minute
// while it lasts, and once when it ends, instead of once per poll.
type outageLog struct {
	log      zerolog.Logger
	what     string
	since    time.Time
	reported time.Time
	failures int
}

func (o *outageLog) report(err error) {
	now := time.Now()
	if err == nil {
		if o.failures > 0 {
			o.log.Info().Str("paused_for", now.Sub(o.since).Round(time.Millisecond).String()).Int("failures", o.failures).
				Msg(o.what + " resumed: the database answers again")
			o.failures = 0
		}
		return
	}
	if o.failures == 0 {
		o.since = now
	}
	o.failures++
	if o.failures == 1 || now.Sub(o.reported) >= time.Minute {
		o.reported = now
		o.log.Error().Err(err).Int("failures", o.failures).Msg(o.what + " paused: the database does not answer; retrying")
	}
}

// wake makes the claim loop look for work now.
func (s *Supervisor) wake() {
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

func (s *Supervisor) logQueue(ctx context.Context) {
	counts, err := s.store.Counts(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("queue counts unavailable")
		return
	}
	ev := s.log.Info().Int("running_here", len(s.slots))
	for _, c := range counts {
		ev = ev.Int64(string(c.Kind)+"s_"+c.Status, c.Count)
	}
	ev.Msg("queue")
}

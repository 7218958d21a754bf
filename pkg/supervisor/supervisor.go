// Package supervisor is the long-running worker: it claims builds and runs,
// starts one jobrunner process per job, keeps the job's lease alive, enforces
// timeouts, and writes every outcome to the database.
package supervisor

import (
	"context"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// Supervisor runs the queue.
type Supervisor struct {
	cfg       *settings.Settings
	store     *store.Store
	queue     queue // the claim loop's view of store
	log       zerolog.Logger
	planner   *Planner
	jobrunner string
	runners   *jobrunners // the serving jobrunner processes (runners.go)

	hardStop     chan struct{} // closed by StopNow
	hardStopOnce sync.Once

	// ExitWhenIdle makes Run return once no job is queued or running
	// anywhere (for batch use and demos).
	ExitWhenIdle bool
	// Version is this build's version, shown in the supervisors table.
	Version string
	// draining is set once the supervisor stops claiming (shown in its row).
	draining atomic.Bool
	fleet    fleetState // leadership, wake-ups, the last database round trip (fleet.go)
	holders  holders    // the leader's view of live supervisors, for the rescue (holders.go)

	obs    telemetry.Observer // metrics; see SetObserver
	health *telemetry.Health

	slots   chan struct{} // one token per running job
	freed   chan struct{} // a job ended: claim again without waiting
	jobs    sync.WaitGroup
	leases  leaseSet
	cancels cancelSignals
	fatal   fatalError // set when the supervisor must stop (see Unready)

	// children, when set, are the jobrunners this process started; with
	// this process a child subreaper, any other child is a dead job's
	// orphan and is ended (see WithOrphanReaper).
	children *procs.Children

	waits tick.Retry // the clock, wait and jitter of retried writes (tests replace them)
	// now is the wall clock for logs only: every time the queue compares
	// or stores comes from the database's clock (see WithClock).
	now func() time.Time
}

// Option changes a Supervisor made by New.
type Option func(*Supervisor)

// WithClock replaces the wall clock the supervisor reads for its logs. The
// queue never depends on it (claims, leases, back-off and expiry use the
// database's clock): tests give a clock hours off to show that.
func WithClock(now func() time.Time) Option { return func(s *Supervisor) { s.now = now } }

// WithOrphanReaper makes the supervisor end, each time a jobrunner exits,
// every child of this process that is not one of its jobrunners: the
// orphans of a job whose jobrunner died, which the kernel gives to this
// process once it is a child subreaper (procs.BecomeSubreaper). Only for a
// process that starts no other children (not a test binary).
func WithOrphanReaper() Option { return func(s *Supervisor) { s.children = &procs.Children{} } }

// New makes a supervisor. jobrunner is the path of the jobrunner binary.
func New(cfg *settings.Settings, st *store.Store, log zerolog.Logger, jobrunner string, opts ...Option) *Supervisor {
	s := &Supervisor{
		cfg: cfg, store: st, queue: st, log: log, jobrunner: jobrunner,
		planner:  &Planner{Settings: cfg, Store: st},
		slots:    make(chan struct{}, cfg.Concurrency),
		freed:    make(chan struct{}, 1),
		hardStop: make(chan struct{}),
		obs:      telemetry.Nop{},
		health:   newHealth(cfg.PollIntervalMax),
		cancels:  cancelSignals{check: make(chan struct{}, 1)},
		now:      time.Now,
	}
	s.fleet.left = make(chan struct{}, 1)
	s.fleet.listenChanged = make(chan struct{}, 1)
	s.fleet.onDuty.Store(true) // until the first beat says otherwise
	for _, o := range opts {
		o(s)
	}
	maxJobs := cfg.JobrunnerJobs
	if maxJobs < 1 {
		maxJobs = settings.DefaultJobrunnerJobs // settings made without it (tests)
	}
	s.runners = &jobrunners{path: jobrunner, children: s.children, maxJobs: maxJobs,
		started: func() { s.obs.JobrunnerStarted() }}
	return s
}

// StopNow ends the shutdown grace early: running jobs are stopped at once
// and their claims handed back. It is safe to call more than once.
func (s *Supervisor) StopNow() {
	s.hardStopOnce.Do(func() { close(s.hardStop) })
}

// Run works the queue until ctx ends, then stops claiming, gives running jobs
// the shutdown grace to finish, stops the rest and hands their claims back.
func (s *Supervisor) Run(ctx context.Context) error {
	if err := s.store.CheckMigrated(ctx); err != nil {
		s.health.Set(telemetry.CondSchema, false, err.Error())
		return err
	}
	s.health.Set(telemetry.CondSchema, true, "migrated")
	s.register(ctx)
	defer s.unregister()
	// The logger carries worker_id already (cmd/supervisor's newLogger).
	s.log.Info().Int("concurrency", s.cfg.Concurrency).Int("gomaxprocs", runtime.GOMAXPROCS(0)).Str("database", s.store.Dialect()).
		Dur("lease", s.cfg.LeaseSeconds).Float64("worst_case_shutdown_seconds", ShutdownBound(s.cfg).Seconds()).
		Msg("supervisor started")

	// Jobs get their own context: ending ctx stops claiming, not the jobs.
	jobsCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopJobs()
	// Heartbeats go on while running jobs drain after ctx ends.
	beatCtx, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	beats := make(chan struct{})
	go func() { defer close(beats); s.heartbeats(beatCtx) }()
	defer func() { stopBeats(); <-beats }()
	var services sync.WaitGroup
	service := func(fn func()) {
		services.Add(1)
		go func() { defer services.Done(); fn() }()
	}
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	// The row refresh and the election go on while jobs drain, like the
	// heartbeats; maintenance is the leader's alone.
	fleetDone := make(chan struct{})
	go func() { defer close(fleetDone); s.beats(beatCtx, loopCtx) }()
	defer func() { stopBeats(); <-fleetDone }()
	service(func() { s.collectGarbage(loopCtx) })
	service(func() { every(loopCtx, s.cfg.CleanupInterval, s.leading(s.cleanup)) })
	service(func() { every(loopCtx, s.rescueEvery(), s.leading(s.rescueOnly)) })
	service(func() { every(loopCtx, s.cfg.MetricsInterval, s.leading(s.logQueue)) })
	service(func() { s.probe(loopCtx); every(loopCtx, probeEvery, s.probe) })
	s.health.Set(telemetry.CondWakeups, true, "instant wake-ups on")
	s.obs.Wakeups(true)
	service(func() {
		w := store.Watch{WorkerID: s.cfg.WorkerID, Wake: s.wakeupsUp, Directed: s.wokenAlone,
			Cancelled: s.cancelSeen, LeaderLeft: s.leaderLeft,
			Listen: s.wantListen, ListenChanged: s.fleet.listenChanged}
		s.store.WatchFleet(loopCtx, w, func(err error) {
			s.wakeupsDown(err)
			s.log.Warn().Err(err).Msg("instant wake-ups unavailable; polling until they are back")
		})
	})

	// Cancels are watched until the last job ends, shutdown grace included.
	cancelsDone := make(chan struct{})
	go func() { defer close(cancelsDone); s.watchCancels(jobsCtx) }()

	s.claimLoop(loopCtx, jobsCtx)
	s.draining.Store(true)
	s.health.Draining()
	stopLoop() // also stops the services when the loop ended by itself
	services.Wait()
	s.drain(stopJobs)
	s.runners.close()
	<-cancelsDone
	return s.Unready()
}

// claimLoop claims while there are free slots. Idle polling backs off from
// the poll interval to its max and snaps back as soon as work appears.
func (s *Supervisor) claimLoop(ctx, jobsCtx context.Context) {
	interval := s.cfg.PollInterval
	outage := s.newOutageLog("claims")
	timer := time.NewTimer(0)
	defer timer.Stop()
	// lookAhead: ask when the next job in backoff becomes available after
	// an empty look. Always on the first look, after a wake-up and when the
	// timer was set for such a job; with instant wake-ups on, a plain idle
	// poll skips it (every job queued or re-queued notifies).
	lookAhead := true
	for {
		s.health.Tick()
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.freed:
			if s.fleet.wakeupsOn.Load() && !s.fleet.pending.Load() && !s.ExitWhenIdle {
				// A job ended and no work is known to wait: with
				// instant wake-ups on, every new job notifies.
				continue
			}
			lookAhead = true
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		if s.databaseFileChanged() {
			return
		}
		free := cap(s.slots) - len(s.slots)
		directed := s.fleet.directed.Swap(false)
		if directed && free == 0 {
			// Chosen for a job with no slot left (the advertised free
			// slots were stale): another supervisor looks for it.
			s.forward(ctx)
		}
		claimed := 0
		var err error
		if free > 0 {
			// Cleared before the look: a wake-up during it sets it again.
			s.fleet.pending.Store(false)
			claimed, err = s.claim(ctx, jobsCtx, free)
			if ctx.Err() == nil {
				outage.report(err)
				s.obs.DBOp("claim", err)
				if err == nil {
					s.databaseAnswered()
				}
			}
			// More may wait when the look failed or filled every slot;
			// under a workspace cap, runs held back by it become
			// claimable when a run of their workspace ends, which
			// notifies nobody: a job's end looks again.
			if err != nil || claimed == free || s.cfg.WorkspaceMaxRunning > 0 {
				s.fleet.pending.Store(true)
			}
			if directed && err == nil && claimed == free {
				// Chosen, and the jobs filled every slot: more may
				// wait (a build turned ready for many runs).
				s.forward(ctx)
			}
		}
		// With instant wake-ups on, a look that found less than it asked
		// for emptied the queue as far as this supervisor can tell; the
		// poll is only the safety net.
		quiet := err == nil && s.fleet.wakeupsOn.Load()
		switch {
		case claimed > 0:
			interval = s.cfg.PollInterval
			if claimed == free {
				// Every slot is busy: the next chance is when a job ends.
				timer.Reset(s.cfg.PollIntervalMax)
				continue
			}
			if quiet {
				interval = s.idlePollMax()
			}
		case free > 0:
			interval = min(time.Duration(float64(interval)*1.5), s.cfg.PollIntervalMax)
			if quiet {
				interval = s.idlePollMax()
			}
			if s.ExitWhenIdle && len(s.slots) == 0 && s.idle(ctx) {
				s.log.Info().Msg("queue drained: nothing queued or running")
				return
			}
			if lookAhead || !s.fleet.wakeupsOn.Load() {
				sleep := s.untilNextAvailable(ctx, interval)
				// Woken by the timer set for that job, look ahead again.
				lookAhead = sleep < interval
				timer.Reset(sleep)
				continue
			}
		}
		timer.Reset(interval)
	}
}

// claim takes up to free jobs, builds first (runs wait on them), and starts
// each one.
func (s *Supervisor) claim(ctx, jobsCtx context.Context, free int) (int, error) {
	sent := time.Now() // the local lease is measured from before the claim
	lease := s.cfg.LeaseSeconds
	// Jobs come back with an error when the claim failed after taking them
	// (see store.ClaimJobs): they are ours, so they run.
	builds, runs, err := s.queue.ClaimJobs(ctx, s.cfg.WorkerID, lease, free, free)
	for _, b := range builds {
		f := store.Fence{Kind: store.KindBuild, ID: b.ID, Worker: s.cfg.WorkerID, Attempt: b.AttemptCount}
		s.start(jobsCtx, &buildJob{s: s, row: b, lease: newLease(f, lease, sent)}, laterOf(b.AvailableAt, b.CreatedAt), 0)
	}
	for _, r := range runs {
		f := store.Fence{Kind: store.KindRun, ID: r.ID, Worker: s.cfg.WorkerID, Attempt: r.AttemptCount}
		queued := laterOf(r.AvailableAt, r.CreatedAt)
		readyAt := laterOf(store.Time{Time: queued, Valid: true}, r.BuildReadyAt)
		s.start(jobsCtx, &runJob{s: s, row: r, lease: newLease(f, lease, sent)}, readyAt, readyAt.Sub(queued))
	}
	return len(builds) + len(runs), err
}

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
// claimable) gives the pickup latency that is logged, buildWait how long a
// run had waited for its build before that.
func (s *Supervisor) start(ctx context.Context, j job, readyAt time.Time, buildWait time.Duration) {
	s.slots <- struct{}{}
	s.jobs.Add(1)
	l := j.claim()
	f := l.fence
	log := s.log.With().Str("kind", string(f.Kind)).Str("job_id", f.ID).Int("attempt", f.Attempt).Logger()
	l.log = log
	s.leases.add(l)
	s.heldChanged() // its cancels are heard from now on
	// Pickup latency compares a database time with this host's clock: a
	// figure for the log, never for a decision.
	log.Info().Float64("pickup_latency_ms", float64(s.now().Sub(readyAt).Microseconds())/1000).Msg("job claimed")
	claimedAt := time.Now()
	s.obs.JobClaimed(string(f.Kind), s.now().Sub(readyAt), buildWait)
	go func() {
		defer func() {
			s.obs.JobEnded(string(f.Kind), l.outcomeOf(), time.Since(claimedAt))
			s.leases.remove(l)
			<-s.slots
			s.heldChanged()
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
	next, ok, err := s.queue.NextAvailable(ctx)
	if err != nil || !ok || next <= 0 {
		return sleep
	}
	return max(min(sleep, next), time.Millisecond)
}

// idle reports whether no job is queued or running anywhere.
func (s *Supervisor) idle(ctx context.Context) bool {
	n, err := s.queue.PendingJobs(ctx)
	return err == nil && n == 0
}

// every calls fn each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	tick.Every(ctx, interval, nil, func(ctx context.Context) bool { fn(ctx); return true })
}

// outageLog reports a database outage once when it starts, every minute
// while it lasts, and once when it ends, instead of once per poll.
type outageLog struct {
	log  zerolog.Logger
	what string
	now  func() time.Time
	// explained reports true when a failure has a known cause that was
	// logged already (the SQLite file deleted under the supervisor): the
	// operator then reads one line, not that one and an outage.
	explained func() bool
	since     time.Time
	reported  time.Time
	failures  int
}

func (o *outageLog) report(err error) {
	now := o.now()
	if err == nil {
		if o.failures > 0 {
			o.log.Info().Str("paused_for", now.Sub(o.since).Round(time.Millisecond).String()).Int("failures", o.failures).
				Msg(o.what + " resumed: the database answers again")
			o.failures = 0
		}
		return
	}
	if o.explained != nil && o.explained() {
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

// newOutageLog returns the outage reporter of one database loop.
func (s *Supervisor) newOutageLog(what string) *outageLog {
	return &outageLog{log: s.log, what: what, now: s.now, explained: s.databaseFileChanged}
}

// wake makes the claim loop look for work now.
func (s *Supervisor) wake() {
	s.fleet.pending.Store(true)
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

func (s *Supervisor) logQueue(ctx context.Context) {
	quiet := s.fleet.quiet.Load()
	var counts []store.StatusCount
	if cached := s.fleet.quietCounts.Load(); quiet && cached != nil {
		counts = *cached
	} else {
		var err error
		if counts, err = s.store.Counts(ctx); err != nil {
			s.log.Warn().Err(err).Msg("queue counts unavailable")
			return
		}
		if quiet {
			s.fleet.quietCounts.Store(&counts)
		} else {
			s.fleet.quietCounts.Store(nil)
		}
	}
	ev := s.log.Info().Int("running_here", len(s.slots))
	for _, c := range counts {
		ev = ev.Int64(string(c.Kind)+"s_"+string(c.Status), c.Count)
	}
	ev.Msg("queue")
}

// register writes this supervisor's row in the supervisors table. A failure
// is logged, not fatal: the row is for operators, the queue does not need it.
func (s *Supervisor) register(ctx context.Context) {
	host, _ := os.Hostname()
	err := s.store.RegisterWorker(ctx, store.WorkerInfo{WorkerID: s.cfg.WorkerID, Host: host, PID: os.Getpid(),
		Version: s.Version, Concurrency: s.cfg.Concurrency, Lease: s.cfg.LeaseSeconds})
	if err != nil {
		s.log.Warn().Err(err).Msg("could not write this supervisor's row; 'supervisor workers' will not list it")
	}
}

// unregister deletes the row on a clean stop: a stopped supervisor is not
// gone, it is not there.
func (s *Supervisor) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.RemoveWorker(ctx, s.cfg.WorkerID); err != nil {
		s.log.Warn().Err(err).Msg("could not remove this supervisor's row; it shows as gone after one lease")
	}
}

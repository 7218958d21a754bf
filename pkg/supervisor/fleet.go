package supervisor

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// What a fleet of supervisors costs the database regardless of work: each
// one beats (refreshes its row and stands for the leadership) every lease /
// 3, in one statement that also looks for due work; the leader alone
// rescues expired leases, cleans up and logs the queue gauges; an idle one
// with instant wake-ups polls for work rarely (every queued job notifies),
// and the trigger wakes one supervisor with free slots rather than all
// (store/fleet.go). Only a few idle supervisors listen at all (onDuty):
// PostgreSQL signals every listening session for each NOTIFY.

// fleetState is the supervisor's part in the fleet.
type fleetState struct {
	leader    atomic.Bool // this supervisor leads (maintenance is its job)
	wakeupsOn atomic.Bool // instant wake-ups work: idle polling may be slow
	directed  atomic.Bool // woken alone for a job (the trigger chose us)
	pending   atomic.Bool // work may wait that the claim loop has not looked for
	// quiet: the last beat saw nothing queued and nothing running, so the
	// leader's rescue and cleanup have nothing to do until the next one.
	quiet atomic.Bool
	// quietCounts are the queue counts the leader last read while the
	// fleet was quiet: while it stays quiet they cannot have changed by a
	// job of ours, and the queue line repeats them without a query.
	quietCounts atomic.Pointer[[]store.StatusCount]
	// goneSwept is when the leader last removed long-gone supervisors'
	// rows (unix nanoseconds): hourly, not every cleanup.
	goneSwept atomic.Int64
	answered  atomic.Int64 // unix nanoseconds of the last database round trip that worked
	stopping  atomic.Bool  // claiming stopped: never stand for the leadership again
	// onDuty: the last beat made this supervisor one of the idle
	// listeners (settings.IdleListeners); listenChanged tells the
	// watcher to ask wantListen again.
	onDuty        atomic.Bool
	listenChanged chan struct{}
	left          chan struct{}
}

// beatEvery is how often a supervisor refreshes its row, stands for the
// leadership and looks for due work. With the leadership lasting one
// lease, a killed leader is replaced at most a lease and a third after its
// last beat, and the new one rescues at once and every beat: with the
// default 15 s lease, a killed supervisor's jobs are re-queued within 20 s.
func (s *Supervisor) beatEvery() time.Duration { return s.cfg.Beat() }

// rescueEvery is how often the leader rescues expired leases.
func (s *Supervisor) rescueEvery() time.Duration { return s.cfg.RescueInterval() }

// idlePollMax is the idle wait between looks for work while instant
// wake-ups work: every queued job notifies, and each beat looks for due
// work (the safety net for a wake-up sent to a supervisor killed since).
func (s *Supervisor) idlePollMax() time.Duration { return max(s.cfg.PollIntervalMax, idleWakePoll) }

// idleWakePoll is the idle claim poll while instant wake-ups work.
const idleWakePoll = 30 * time.Second

// leading makes fn the leader's alone.
func (s *Supervisor) leading(fn func(context.Context)) func(context.Context) {
	return func(ctx context.Context) {
		if s.fleet.leader.Load() {
			fn(ctx)
		}
	}
}

// databaseAnswered records a round trip that worked: readiness's database
// condition, without a probe of its own.
func (s *Supervisor) databaseAnswered() {
	s.fleet.answered.Store(time.Now().UnixNano())
	s.health.Set(telemetry.CondDatabase, true, "round trip ok")
}

func (s *Supervisor) answeredWithin(d time.Duration) bool {
	at := s.fleet.answered.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < d
}

// wokenAlone is the watcher's callback for a job the trigger sent to this
// supervisor alone.
func (s *Supervisor) wokenAlone() {
	s.fleet.directed.Store(true)
	s.wakeupsUp()
}

// forward passes a wake-up this supervisor cannot use (all of) on to
// another supervisor with free slots.
func (s *Supervisor) forward(ctx context.Context) {
	if err := s.store.PassOn(ctx, s.cfg.WorkerID); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("could not pass a wake-up on; the others find the job at their next poll")
	}
}

// wantListen is whether this supervisor should listen for notifications
// now: while it runs jobs (their cancels), and while on duty. The others
// hear nothing and find work at their beat.
func (s *Supervisor) wantListen() bool { return len(s.slots) > 0 || s.fleet.onDuty.Load() }

// heldChanged follows a job taken or ended: whether to listen, and how
// many connections the pool keeps, depend on the jobs held.
func (s *Supervisor) heldChanged() {
	s.store.Holding(len(s.slots))
	s.listenMayChange()
}

// listenMayChange tells the watcher to ask wantListen again.
func (s *Supervisor) listenMayChange() {
	select {
	case s.fleet.listenChanged <- struct{}{}:
	default:
	}
}

// leaderLeft is the watcher's callback when the leader may have stepped
// down: the beat loop checks at once instead of at its next beat.
func (s *Supervisor) leaderLeft() {
	select {
	case s.fleet.left <- struct{}{}:
	default:
	}
}

// vacancyCheckGap spaces the checks for a vacant leadership that writes
// trigger (on SQLite every write to the file does).
const vacancyCheckGap = time.Second

// beats beats every beatEvery until ctx ends; once claiming stops (stop
// ends) it gives up the leadership and beats on as draining.
func (s *Supervisor) beats(ctx, stop context.Context) {
	outage := s.newOutageLog("beats")
	beat := func() {
		err := s.beat(ctx)
		if ctx.Err() == nil {
			outage.report(err)
		}
	}
	beat()
	timer := time.NewTimer(s.beatEvery())
	defer timer.Stop()
	stopped := stop.Done()
	// A vacancy check asked for within vacancyCheckGap of the last one is
	// put off to the end of the gap, never dropped.
	var lastCheck time.Time
	var later <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			// Stopped with no job left to drain: the last word.
			if stopped != nil {
				s.stepDown()
			}
			return
		case <-timer.C:
			beat()
			timer.Reset(s.beatEvery())
		case <-stopped:
			stopped = nil
			s.stepDown()
			beat() // the row says draining, with no free slot
		case <-s.fleet.left:
			if s.fleet.leader.Load() || stopped == nil || later != nil {
				continue
			}
			if wait := vacancyCheckGap - time.Since(lastCheck); wait > 0 {
				later = time.After(wait)
				continue
			}
			lastCheck = time.Now()
			if vacant, err := s.store.LeaderVacant(ctx); err == nil && vacant {
				beat()
			}
		case <-later:
			later = nil
			if s.fleet.leader.Load() || stopped == nil {
				continue
			}
			lastCheck = time.Now()
			if vacant, err := s.store.LeaderVacant(ctx); err == nil && vacant {
				beat()
			}
		}
	}
}

// beat refreshes the row, stands for the leadership and, on becoming the
// leader, does the full maintenance pass at once.
func (s *Supervisor) beat(ctx context.Context) error {
	draining := s.draining.Load() || s.fleet.stopping.Load()
	held := len(s.slots)
	free := cap(s.slots) - held
	if draining {
		free = 0
	}
	got, err := s.store.BeatWorker(ctx, store.Beat{WorkerID: s.cfg.WorkerID, JobsHeld: held, FreeSlots: free,
		Draining: draining, LeaderTTL: s.cfg.LeaseSeconds, Listeners: s.cfg.IdleListeners})
	if ctx.Err() == nil {
		s.obs.DBOp("beat", err)
	}
	if err != nil {
		return err
	}
	s.databaseAnswered()
	s.fleet.quiet.Store(!got.Work && !got.Busy)
	if s.fleet.onDuty.Swap(got.OnDuty) != got.OnDuty {
		s.listenMayChange()
	}
	leader := got.Leader
	if got.Work && free > 0 {
		s.wake()
	}
	if !got.Found && !draining {
		// Removed as gone after a long outage: written anew.
		s.register(ctx)
	}
	was := s.fleet.leader.Swap(leader)
	switch {
	case leader && !was:
		s.log.Info().Msg("became leader: this supervisor now rescues expired leases, cleans up and logs the queue")
		s.cleanup(ctx)
		s.logQueue(ctx)
	case !leader && was:
		s.log.Info().Msg("gave up leadership: another supervisor does the maintenance now")
	}
	return nil
}

// stepDown gives the leadership up at once on a clean stop, so another
// supervisor takes it now (it is told) rather than after one lease.
func (s *Supervisor) stepDown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.fleet.stopping.Store(true)
	if !s.fleet.leader.Swap(false) {
		return
	}
	if err := s.store.StepDown(ctx, s.cfg.WorkerID); err != nil {
		s.log.Warn().Err(err).Msg("could not give up leadership; another supervisor takes it after one lease")
		return
	}
	s.log.Info().Msg("gave up leadership: stopping")
}

package supervisor

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// probeEvery is how often readiness checks the database and the jobrunner;
// databaseStale is how long a database check may be missing (hanging)
// before readiness fails.
const (
	probeEvery    = 2 * time.Second
	probeTimeout  = 5 * time.Second
	databaseStale = 15 * time.Second
	// probeReuse: a round trip of other work this recent stands for the
	// probe's (idle supervisors still beat every lease / 3).
	probeReuse = 10 * time.Second
)

// newHealth makes the readiness conditions the supervisor keeps. The claim
// loop turns at least every PollIntervalMax; liveness allows a minute more,
// for a database call that hangs during an outage.
func newHealth(pollMax time.Duration) *telemetry.Health {
	h := telemetry.NewHealth(time.Minute+3*pollMax,
		telemetry.CondDatabase, telemetry.CondSchema, telemetry.CondJobrunner, telemetry.CondWakeups)
	h.Expire(telemetry.CondDatabase, databaseStale)
	h.Set(telemetry.CondDraining, true, "not draining")
	return h
}

// SetObserver makes the supervisor report claims, job endings and database
// errors to o (metrics); call it before Run. The default records nothing.
func (s *Supervisor) SetObserver(o telemetry.Observer) { s.obs = o }

// Health is this supervisor's liveness and readiness; other code may add
// conditions to it with Set.
func (s *Supervisor) Health() *telemetry.Health { return s.health }

// probe checks what readiness needs besides the claim loop: a database
// round trip and the jobrunner binary.
func (s *Supervisor) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if s.answeredWithin(probeReuse) {
		// A claim or beat made a round trip lately (and set the
		// condition): no probe of its own.
	} else if err := s.store.Ping(pctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		s.obs.DBOp("probe", err)
		s.health.Set(telemetry.CondDatabase, false, "database round trip failed: "+err.Error())
	} else {
		s.obs.DBOp("probe", nil)
		s.health.Set(telemetry.CondDatabase, true, "round trip ok")
	}
	if _, err := os.Stat(s.jobrunner); err != nil {
		s.health.Set(telemetry.CondJobrunner, false, "jobrunner binary missing: "+err.Error())
	} else {
		s.health.Set(telemetry.CondJobrunner, true, "found at "+s.jobrunner)
	}
}

// wakeupsUp and wakeupsDown keep the wakeups condition: polling always runs,
// so wake-ups that fail leave the worker ready, and the reason says so.
func (s *Supervisor) wakeupsUp() {
	s.fleet.wakeupsOn.Store(true)
	s.health.Set(telemetry.CondWakeups, true, "instant wake-ups on")
	s.obs.Wakeups(true)
	s.wake()
}

func (s *Supervisor) wakeupsDown(err error) {
	s.fleet.wakeupsOn.Store(false)
	s.obs.Wakeups(false)
	s.health.Set(telemetry.CondWakeups, true, "instant wake-ups unavailable, polling every "+
		s.cfg.PollIntervalMax.String()+" at most: "+err.Error())
}

// ended records how this worker's part in a job ended, for metrics. A job
// that never records an ending lost its lease, or its outcome could not be
// written before the lease ran out.
func (l *lease) ended(e ending) {
	switch {
	case e.event == store.EventHandBack:
		l.outcome = telemetry.OutcomeHandedBack
	case e.event == store.EventRetryLater:
		l.outcome = telemetry.OutcomeRetried
	case e.succeeded():
		l.outcome = telemetry.OutcomeSucceeded
	case e.code != nil && *e.code == jobspec.CodeTimeout:
		l.outcome = telemetry.OutcomeTimedOut
	default:
		l.outcome = telemetry.OutcomeFailed
	}
}

// outcomeOf is the outcome label of a job whose goroutine ended.
func (l *lease) outcomeOf() string {
	if l.outcome == "" {
		return telemetry.OutcomeLeaseLost
	}
	return l.outcome
}

// observeCleanup counts the expired leases one cleanup pass handled.
func (s *Supervisor) observeCleanup(res cleanupResult) {
	s.obs.DBOp("cleanup", nil)
	s.obs.LeasesExpired(string(store.KindRun), "requeued", res.runsRequeued)
	s.obs.LeasesExpired(string(store.KindRun), "failed", res.runsFailed)
	s.obs.LeasesExpired(string(store.KindBuild), "requeued", res.buildsRequeued)
	s.obs.LeasesExpired(string(store.KindBuild), "failed", res.buildsFailed)
}

// QueueReader reads the queue gauges from st.
func QueueReader(st *store.Store) telemetry.QueueReader {
	return func(ctx context.Context, now time.Time) ([]telemetry.QueueStat, error) {
		stats, err := st.QueueStats(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]telemetry.QueueStat, len(stats))
		for i, q := range stats {
			out[i] = telemetry.QueueStat{Kind: string(q.Kind), Ready: q.Ready, Delayed: q.Delayed, Running: q.Running}
			if q.OldestReady.Valid && q.Now.Valid {
				// Aged on the database's clock, expressed on ours.
				out[i].OldestReady = now.Add(-q.Now.Sub(q.OldestReady.Time))
			}
		}
		return out, nil
	}
}

// ignore is err unless it is target: for DBOp, which counts failures only.
func ignore(err, target error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// PauseReader counts the pauses in st by scope, for ade_worker_paused.
func PauseReader(st *store.Store) telemetry.PauseReader {
	return func(ctx context.Context) (map[string]int64, error) {
		ps, err := st.Pauses(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string]int64{}
		for _, s := range store.PauseScopes {
			out[string(s)] = 0
		}
		for _, p := range ps {
			out[string(p.Scope)]++
		}
		return out, nil
	}
}

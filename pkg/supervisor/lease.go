package supervisor

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// lease tracks this worker's claim on one job on the local monotonic clock.
// Its end is measured from before the claim or renewal was sent, so it
// never runs past the lease the database holds.
type lease struct {
	fence  store.Fence
	length time.Duration
	log    zerolog.Logger

	mu   sync.Mutex
	end  time.Time
	lost bool
	// closing is set before the job's final write (or re-queue, or
	// hand-back) is sent: from then on the job's own fenced write tells
	// whether the lease still held, not a renewal (see renewHeld).
	closing bool
	notify  func(left time.Duration) // tells the running jobrunner
	onLost  func()                   // stops the running jobrunner

	// A cancel of the job's row (see cancel.go).
	cancelMu  sync.Mutex
	cancelled bool
	stopChild func() // set while a child runs

	// outcome is how this worker's part ended (see ended); only the job's
	// own goroutine touches it.
	outcome string
}

func newLease(f store.Fence, length time.Duration, sentAt time.Time) *lease {
	return &lease{fence: f, length: length, end: sentAt.Add(length)}
}

// renewed records a renewal sent at sentAt and tells the jobrunner.
func (l *lease) renewed(sentAt time.Time) {
	l.mu.Lock()
	l.end = sentAt.Add(l.length)
	notify := l.notify
	l.mu.Unlock()
	if notify != nil {
		notify(l.remaining())
	}
}

// closeBegins records that the job's final write is about to be sent.
func (l *lease) closeBegins() {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
}

// isClosing reports whether the job's final write was sent (or is about
// to be).
func (l *lease) isClosing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closing
}

// expires is when the lease runs out unless renewed.
func (l *lease) expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

// remaining is how long the lease lasts from now unless renewed.
func (l *lease) remaining() time.Duration { return max(time.Until(l.expires()), 0) }

// attach connects a running jobrunner: notify hears each renewal, onLost
// stops it. A lease already lost calls onLost at once. detach undoes it.
func (l *lease) attach(notify func(time.Duration), onLost func()) (detach func()) {
	l.mu.Lock()
	l.notify, l.onLost = notify, onLost
	lost := l.lost
	l.mu.Unlock()
	if lost {
		onLost()
	}
	return func() {
		l.mu.Lock()
		l.notify, l.onLost = nil, nil
		l.mu.Unlock()
	}
}

// markLost records that the job is no longer ours and stops its child;
// it reports whether this call was the first to say so.
func (l *lease) markLost() bool {
	l.mu.Lock()
	first, onLost := !l.lost, l.onLost
	l.lost = true
	l.mu.Unlock()
	if first && onLost != nil {
		onLost()
	}
	return first
}

// leaseSet is every job this supervisor holds, by kind and id: one
// heartbeat renews them all in one statement, and cancels find them here.
type leaseSet struct {
	mu   sync.Mutex
	held map[store.JobRef]*lease
}

func (ls *leaseSet) add(l *lease) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.held == nil {
		ls.held = map[store.JobRef]*lease{}
	}
	ls.held[l.fence.Ref()] = l
}

// remove forgets l, not a newer claim of the same job (this supervisor may
// claim a job again while the goroutine of its lost attempt still ends).
func (ls *leaseSet) remove(l *lease) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.held[l.fence.Ref()] == l {
		delete(ls.held, l.fence.Ref())
	}
}

func (ls *leaseSet) get(ref store.JobRef) (*lease, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l, ok := ls.held[ref]
	return l, ok
}

func (ls *leaseSet) refs() []store.JobRef {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]store.JobRef, 0, len(ls.held))
	for ref := range ls.held {
		out = append(out, ref)
	}
	return out
}

func (ls *leaseSet) snapshot() []*lease {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]*lease, 0, len(ls.held))
	for _, l := range ls.held {
		out = append(out, l)
	}
	return out
}

// heartbeats renews every held lease each heartbeat interval until ctx
// ends. While the database does not answer nothing is renewed: each
// jobrunner then stops its job before its lease can lapse.
func (s *Supervisor) heartbeats(ctx context.Context) {
	outage := s.newOutageLog("heartbeats")
	every(ctx, s.cfg.Heartbeat(), func(ctx context.Context) {
		err := s.renewLeases(ctx)
		if ctx.Err() == nil {
			outage.report(err)
		}
	})
}

// renewLeases renews every held lease in one statement, fenced per job.
// (The supervisor's row is refreshed by its beat: see fleet.go.)
func (s *Supervisor) renewLeases(ctx context.Context) error {
	return s.renewHeld(ctx, s.leases.snapshot())
}

func (s *Supervisor) renewHeld(ctx context.Context, held []*lease) error {
	// A lease this supervisor saw run out is lost whatever the database's
	// clock says (its jobrunner stopped by the same clock): never renewed.
	live := held[:0:0]
	for _, l := range held {
		if l.remaining() > 0 || l.isClosing() {
			live = append(live, l)
		} else {
			s.leaseLost(l)
		}
	}
	held = live
	if len(held) == 0 {
		return nil
	}
	fences := make([]store.Fence, len(held))
	for i, l := range held {
		fences[i] = l.fence
	}
	sent := time.Now()
	renewed, err := s.store.RenewLeases(ctx, s.cfg.WorkerID, s.cfg.LeaseSeconds, fences)
	if ctx.Err() == nil {
		s.obs.DBOp("heartbeat", err)
	}
	if err != nil {
		return err
	}
	for _, l := range held {
		switch {
		case renewed[l.fence]:
			l.renewed(sent)
		case l.isClosing():
			// The job's final write may have committed before the renewal
			// read its row: not a loss. Had the lease been lost, that
			// fenced write finds out and reports it (persist). Checked
			// after the renewal returned: a job not closing by then sent
			// its final write after the renewal read the row.
			l.log.Debug().Msg("renewal skipped a job whose final write was sent")
		default:
			s.leaseLost(l)
		}
	}
	return nil
}

// leaseLost is the one place where a heartbeat found that a job's row is no
// longer ours. A cancelled row is a cancel (the job ends as cancelled);
// otherwise its lease expired and was rescued, or the row changed under us:
// the job's child is stopped and nothing more is written about it. The
// row is read off the heartbeat's path, so one slow read cannot delay the
// renewal of the other jobs.
func (s *Supervisor) leaseLost(l *lease) {
	go func() {
		if s.rowCancelled(l.fence) {
			s.stopCancelled(l.log, l, "heartbeat")
			return
		}
		if l.markLost() {
			l.log.Warn().Str("outcome", telemetry.OutcomeLeaseLost).Msg("lease lost: another worker holds this job now; stopping it and writing nothing")
		}
	}()
}

package store

import (
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// The pool's idle connections. On PostgreSQL every connection is a server
// process and one of max_connections, shared by the whole fleet: an idle
// supervisor keeps one pooled connection (plus its LISTEN connection). A
// busy one keeps what its jobs use at once, so it does not pay a new
// connection for every statement that overlaps another.
//
// database/sql has no such setting, so pool switches between two: idle, at
// most one idle connection (a second statement at once opens one that
// closes when it returns); busy, up to the pool's size, kept until the
// spell ends. A busy spell starts when overlapping statements keep
// closing connections (busyChurn a second) and lasts busySpell; the next
// second, idle again, tells whether the load goes on (then another spell
// starts at once, so a busy supervisor pays for about a second of
// connects every busySpell).

// poolIdleTime is how long an unused connection stays open: longer than an
// idle supervisor's beat (lease / 3), so that its one kept connection is
// not closed and opened again, at a server process each time, between
// beats. Busy connections beyond that one go when the busy spell ends.
const poolIdleTime = time.Minute

// busyChurn is how many connections closed for lack of idle room within a
// second start a busy spell: then a kept connection saves a connect per
// statement. An idle supervisor's overlaps (two periodic tasks that tick
// together) stay below it, and cost a connect each.
const busyChurn = 5

// busySpell is how long a busy spell keeps idle connections.
const busySpell = 10 * time.Second

type pool struct {
	db   *sql.DB
	size int
	done chan struct{}
	once sync.Once
	// held is how many jobs the supervisor runs (Store.Holding). While
	// any runs, and busySpell after the last ended, the pool keeps its
	// idle connections: a job's statements overlap the claim loop's and
	// the beat's, and with one idle connection every overlap paid a
	// connect (about 4 a run, 8 ms of server CPU, for a fleet's duty
	// supervisors that each got a run every few seconds).
	held atomic.Int64
	mu   sync.Mutex // orders the switches of adapt and hold
	kept bool       // idle connections are kept (SetMaxIdleConns(size))
}

// newPool sizes db's pool: size connections at most (0: the dialect's
// default), idle ones trimmed where the dialect says they cost the server.
func newPool(db *sql.DB, d dialect, size int) *pool {
	if size <= 0 {
		size = d.defaultPoolSize()
	}
	p := &pool{db: db, size: size, done: make(chan struct{})}
	db.SetMaxOpenConns(size)
	if !d.trimIdle() {
		db.SetMaxIdleConns(size)
		db.SetConnMaxIdleTime(0)
		close(p.done)
		return p
	}
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(poolIdleTime)
	go p.adapt()
	return p
}

// keep switches between keeping idle connections and keeping one; it
// reports whether it switched.
func (p *pool) keep(on bool) bool {
	if p.kept == on {
		return false
	}
	p.kept = on
	if on {
		p.db.SetMaxIdleConns(p.size)
	} else {
		p.db.SetMaxIdleConns(1)
	}
	return true
}

// hold records that the supervisor runs n jobs; the first one keeps the
// idle connections at once (the job's first statements come within
// milliseconds, adapt looks once a second).
func (p *pool) hold(n int) {
	select {
	case <-p.done:
		return // not trimmed, or stopped
	default:
	}
	p.held.Store(int64(n))
	if n > 0 {
		p.mu.Lock()
		p.keep(true)
		p.mu.Unlock()
	}
}

// adapt switches between the idle and the busy spell, once a second.
func (p *pool) adapt() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var busyUntil, heldUntil time.Time
	closed := int64(0)
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		now := time.Now()
		st := p.db.Stats()
		churn := st.MaxIdleClosed - closed
		closed = st.MaxIdleClosed
		if busyUntil.IsZero() && churn >= busyChurn {
			busyUntil = now.Add(busySpell)
		} else if !busyUntil.IsZero() && now.After(busyUntil) {
			busyUntil = time.Time{}
		}
		if p.held.Load() > 0 {
			heldUntil = now.Add(busySpell)
		}
		p.mu.Lock()
		// A job that started since this tick read held kept them on.
		on := !busyUntil.IsZero() || now.Before(heldUntil) || p.held.Load() > 0
		if p.keep(on) && !on {
			closed = p.db.Stats().MaxIdleClosed // this trim is no churn
		}
		p.mu.Unlock()
	}
}

// stop ends adapt; the pool's connections close with the database handle.
func (p *pool) stop() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		select {
		case <-p.done:
		default:
			close(p.done)
		}
	})
}

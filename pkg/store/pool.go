package store

import (
	"database/sql"
	"sync"
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

// adapt switches between the idle and the busy spell, once a second.
func (p *pool) adapt() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var busyUntil time.Time // zero: idle
	closed := int64(0)
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		st := p.db.Stats()
		churn := st.MaxIdleClosed - closed
		closed = st.MaxIdleClosed
		switch {
		case busyUntil.IsZero() && churn >= busyChurn:
			busyUntil = time.Now().Add(busySpell)
			p.db.SetMaxIdleConns(p.size)
		case !busyUntil.IsZero() && time.Now().After(busyUntil):
			busyUntil = time.Time{}
			p.db.SetMaxIdleConns(1)
			closed = p.db.Stats().MaxIdleClosed // this trim is no churn
		}
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

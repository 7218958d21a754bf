package store

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// The fleet: what N supervisors on one database share besides the queue.
//
// Maintenance (the rescue of expired leases, cleanup, the queue gauges) is
// done by one supervisor at a time, the leader: the one named in the single
// row of ade_worker_leader whose expires_at lies ahead on the database's
// clock. Every supervisor's beat (BeatWorker) refreshes its own row and, in
// the same statement or transaction, takes or keeps the leadership when the
// row is its own, expired, or (a clock stepped back) more than one TTL
// ahead. No session state is involved (no advisory lock), so it works
// through any connection pooler.
//
// On PostgreSQL each supervisor also advertises its free slots in its row;
// the queue's trigger sends a queued job's notification to one supervisor
// with free slots (see postgresDialect.migrations), not to all.

const leaderTable = "ade_worker_leader"

// leaderRole names the one leadership there is today.
const leaderRole = "maintenance"

// addFreeSlotsSQL and createFleetSQL are migration 5; TIMESTAMP is the
// dialect's type.
const addFreeSlotsSQL = `ALTER TABLE ` + supervisorsTable + ` ADD COLUMN free_slots integer NOT NULL DEFAULT 0`

var createFleetSQL = []string{
	`CREATE TABLE IF NOT EXISTS ` + leaderTable + ` (
	role varchar(64) PRIMARY KEY,
	worker_id varchar(255) NOT NULL,
	expires_at TIMESTAMP NOT NULL)`,
}

func (s *Store) createFleet(db *gorm.DB) error {
	// A step runs again when its record is gone (a database whose
	// migration records were lost): the column may be there already.
	cols, err := s.schemaColumns(db)
	if err != nil {
		return err
	}
	if !cols.has(supervisorsTable, "free_slots") {
		if err := db.Exec(addFreeSlotsSQL).Error; err != nil {
			return err
		}
	}
	for _, q := range createFleetSQL {
		if err := db.Exec(strings.ReplaceAll(q, "TIMESTAMP", s.dialect.timestampType())).Error; err != nil {
			return err
		}
	}
	return nil
}

// AppName is what PostgreSQL shows as the application_name of a
// supervisor's connections (pg_stat_activity): one supervisor's connections
// are counted by it, and the queue's trigger wakes only a supervisor whose
// LISTEN connection is there under it, listening (listeningSQL). PostgreSQL keeps 63 bytes.
func AppName(workerID string) string {
	name := appNamePrefix + workerID
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

const appNamePrefix = "ade-worker "

// listeningSQL is true when the supervisor whose worker_id is the SQL
// expression id listens for wake-ups now: a connection to the server under
// its AppName whose last statement was its LISTEN (see listenPostgres). A
// supervisor killed since its last beat still has a fresh row for up to a
// lease, but its connections closed with it, and one that is not on duty
// keeps its connection but UNLISTENs: a wake-up sent to either would be
// lost until some beat found the job. Every backend's application_name and
// statement are visible to every role (track_activities off shows no
// statement: then no supervisor counts as listening and the trigger wakes
// every listener); the snapshot is taken once per transaction, so a batch
// of inserts reads it once.
func listeningSQL(id string) string { return backendOfSQL(id, `AND a.query LIKE 'LISTEN %'`) }

// connectedSQL is true when the supervisor whose worker_id is the SQL
// expression id has any connection to the server: alive, listening or not.
func connectedSQL(id string) string { return backendOfSQL(id, "") }

// backendOfSQL: one read of the server's backends however many rows ask.
func backendOfSQL(id, cond string) string {
	return `left('` + appNamePrefix + `' || ` + id + `, 63) IN (SELECT a.application_name FROM pg_stat_get_activity(NULL) a
		WHERE a.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) ` + cond + `)`
}

// WakeChannel is the PostgreSQL channel on which the queue's trigger wakes
// the supervisor workerID alone: derived from its id the same way in SQL
// ('ade_worker_jobs_' || left(md5(worker_id), 20)), within the 63 bytes a
// channel name may have.
func WakeChannel(workerID string) string {
	sum := md5.Sum([]byte(workerID))
	return notifyChannel + "_" + hex.EncodeToString(sum[:])[:20]
}

// Beat is what a supervisor says of itself on each beat.
type Beat struct {
	WorkerID  string
	JobsHeld  int
	FreeSlots int  // advertised to the queue's trigger (0 while draining)
	Draining  bool // a draining supervisor gives up and never takes the leadership
	// LeaderTTL is how long the leadership lasts without a beat.
	LeaderTTL time.Duration
	// Listeners is how many supervisors with free slots listen for
	// wake-ups (PostgreSQL); 0: all of them.
	Listeners int
}

// BeatResult is what a beat learnt.
type BeatResult struct {
	Leader bool // this supervisor leads until its next beat
	Found  bool // false: its row is gone (removed as gone after an outage)
	// Work: some job is queued and due. An idle supervisor that hears of
	// no wake-up still finds, within one beat, a job whose wake-up was
	// lost (sent to a supervisor killed since).
	Work bool
	// Busy: some run is running or some build building (a lease that
	// may expire): the leader's rescue has nothing to look for otherwise.
	Busy bool
	// OnDuty: this supervisor is one of the Listeners that listen for
	// wake-ups while idle: the first by md5(worker_id) of the connected
	// ones with free slots. SQLite's watch ignores it: watching the file
	// costs the database nothing.
	OnDuty bool
}

// BeatWorker refreshes the supervisor's row, takes, keeps or (draining)
// gives up the leadership, and looks whether any job is due: one statement
// on PostgreSQL, one transaction on SQLite.
func (s *Store) BeatWorker(ctx context.Context, b Beat) (BeatResult, error) {
	d := 0
	if b.Draining {
		d = 1
	}
	now := s.dialect.nowSQL()
	refresh := `UPDATE ` + supervisorsTable + ` SET last_seen_at = ` + now + `, jobs_held = ?, draining = ?, free_slots = ?
	WHERE worker_id = ?`
	refreshArgs := []any{b.JobsHeld, d, b.FreeSlots, b.WorkerID}
	var lead string
	var leadArgs []any
	if b.Draining {
		lead = `DELETE FROM ` + leaderTable + ` WHERE role = ? AND worker_id = ?`
		leadArgs = []any{leaderRole, b.WorkerID}
	} else {
		// ON CONFLICT DO UPDATE locks the row even where its WHERE
		// declines: the NOT EXISTS keeps the beats of the fleet's other
		// supervisors, which find a live leader, off the one row.
		ttl := b.LeaderTTL.Seconds()
		lead = `INSERT INTO ` + leaderTable + ` (role, worker_id, expires_at) SELECT ?, ?, ` + s.dialect.laterSQL("?") + `
	WHERE NOT EXISTS (SELECT 1 FROM ` + leaderTable + ` l WHERE l.role = ? AND l.worker_id <> ?
		AND l.expires_at >= ` + now + ` AND l.expires_at <= ` + s.dialect.laterSQL("?") + `)
	ON CONFLICT (role) DO UPDATE SET worker_id = excluded.worker_id, expires_at = excluded.expires_at
	WHERE ` + leaderTable + `.worker_id = excluded.worker_id OR ` + leaderTable + `.expires_at < ` + now + `
		OR ` + leaderTable + `.expires_at > ` + s.dialect.clockLaterSQL("?")
		leadArgs = []any{leaderRole, b.WorkerID, ttl, leaderRole, b.WorkerID, ttl, ttl}
	}
	due := `SELECT CASE WHEN EXISTS (SELECT 1 FROM runs WHERE status = 'queued' AND available_at <= ` + now + `)
	OR EXISTS (SELECT 1 FROM builds WHERE status = 'queued' AND available_at <= ` + now + `) THEN 1 ELSE 0 END`
	busy := `SELECT CASE WHEN EXISTS (SELECT 1 FROM runs WHERE status = 'running')
	OR EXISTS (SELECT 1 FROM builds WHERE status = 'building') THEN 1 ELSE 0 END`
	got, err := s.dialect.beat(ctx, s, beatQueries{worker: b.WorkerID, refresh: refresh, lead: lead, due: due, busy: busy,
		refreshArgs: refreshArgs, leadArgs: leadArgs})
	if err != nil {
		s.advertised.forget(b.WorkerID)
		return BeatResult{}, fmt.Errorf("beat of supervisor %s: %w", b.WorkerID, err)
	}
	if got.Seen > 0 {
		s.advertised.set(b.WorkerID, b.FreeSlots)
	} else {
		s.advertised.forget(b.WorkerID)
	}
	return BeatResult{Leader: got.Led > 0 && !b.Draining, Found: got.Seen > 0, Work: got.Work != 0, Busy: got.Busy != 0,
		OnDuty: b.Listeners <= 0 || !b.Draining && b.FreeSlots > 0 && got.Ahead < b.Listeners}, nil
}

// beatQueries are a beat's statements: two writes whose rows count
// (refresh, lead) and two reads of one 0/1 value (due, busy).
type beatQueries struct {
	worker                   string
	refresh, lead, due, busy string
	refreshArgs, leadArgs    []any
}

// beatCounts is what a beat's statements gave.
type beatCounts struct{ Seen, Led, Work, Busy, Ahead int }

// LeaderVacant reports whether no supervisor leads now (no row, or an
// expired one): a read, for a supervisor told the leader may have left.
func (s *Store) LeaderVacant(ctx context.Context) (bool, error) {
	var n []int64
	err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM `+leaderTable+` WHERE role = ? AND expires_at >= `+s.dialect.nowSQL(),
		leaderRole).Scan(&n).Error
	if err != nil {
		return false, fmt.Errorf("read the leader: %w", err)
	}
	return len(n) == 0 || n[0] == 0, nil
}

// Leader names the supervisor that leads now; "" when none does.
func (s *Store) Leader(ctx context.Context) (string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT worker_id FROM `+leaderTable+` WHERE role = ? AND expires_at >= `+s.dialect.nowSQL(),
		leaderRole).Scan(&ids).Error
	if err != nil {
		return "", fmt.Errorf("read the leader: %w", err)
	}
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}

// StepDown gives up the leadership if workerID holds it, and on PostgreSQL
// tells every supervisor at once (a control notification) so that one of
// them takes over now rather than at its next beat. On SQLite the delete is
// a write to the file, which every supervisor watches.
func (s *Store) StepDown(ctx context.Context, workerID string) error {
	err := s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM `+leaderTable+` WHERE role = ? AND worker_id = ?`, leaderRole, workerID)
		if res.Error != nil || res.RowsAffected == 0 || !s.dialect.notifies() {
			return res.Error
		}
		return tx.Exec(`SELECT pg_notify(?, ?)`, controlChannel, `{"action":"leader"}`).Error
	})
	if err != nil {
		return fmt.Errorf("give up the leadership of %s: %w", workerID, err)
	}
	return nil
}

// PassOn wakes one other supervisor that listens (see listeningSQL) with free
// slots, or every listening supervisor when none does (PostgreSQL; a no-op on SQLite, where
// every write wakes them all): for a supervisor woken for jobs it has no
// slot for, or whose slots the jobs filled while more may wait.
func (s *Store) PassOn(ctx context.Context, workerID string) error {
	if !s.dialect.notifies() {
		return nil
	}
	err := s.db.WithContext(ctx).Exec(`SELECT pg_notify(COALESCE((SELECT '`+notifyChannel+`_' || left(md5(worker_id), 20)
	FROM `+supervisorsTable+` WHERE worker_id <> ? AND free_slots > 0 AND draining = 0
		AND last_seen_at > now() - make_interval(secs => lease_seconds) AND `+listeningSQL("worker_id")+`
	ORDER BY random() LIMIT 1), '`+notifyChannel+`'), 'forward')`, workerID).Error
	if err != nil {
		return fmt.Errorf("wake another supervisor: %w", err)
	}
	return nil
}

// advertiseFree writes, in the claim's transaction, how many slots the
// claiming supervisor has left, for the queue's trigger to choose whom to
// wake (PostgreSQL only; SQLite wakes by file changes). Every job that ends
// frees a slot and is followed by a claim, so the figure is as fresh as the
// last claim; a stale one costs a forwarded wake-up, never a lost job. It
// says whether it wrote: the statement is skipped when this process last
// wrote the same figure (a busy supervisor's claims nearly always find 0
// before and after; the skipped round trip was a sixth of the claim's).
func (s *Store) advertiseFree(tx *gorm.DB, worker string, free int) (bool, error) {
	if !s.dialect.notifies() {
		return false, nil
	}
	free = max(free, 0)
	if s.advertised.is(worker, free) {
		return false, nil
	}
	err := tx.Exec(`UPDATE `+supervisorsTable+` SET free_slots = ? WHERE worker_id = ? AND free_slots <> ?`, free, worker, free).Error
	if err != nil {
		return false, fmt.Errorf("advertise free slots: %w", err)
	}
	return true, nil
}

// advertisedFree remembers the free-slot figure last committed for each
// supervisor by this process. Only its own claims and beats write a
// supervisor's figure, and every beat writes it, so a remembered figure
// that went stale (a row re-registered, two writes committing in the other
// order) is corrected within a beat.
type advertisedFree struct {
	mu   sync.Mutex
	free map[string]int
}

func (a *advertisedFree) is(worker string, free int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	got, ok := a.free[worker]
	return ok && got == free
}

// set records a committed figure; forget drops one whose write may not
// have committed.
func (a *advertisedFree) set(worker string, free int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.free == nil {
		a.free = map[string]int{}
	}
	a.free[worker] = max(free, 0)
}

// ended records how the transaction that ran advertiseFree ended: its
// figure when it wrote one and committed, nothing known after a failure.
func (a *advertisedFree) ended(worker string, free int, wrote bool, err error) {
	switch {
	case err != nil:
		a.forget(worker)
	case wrote:
		a.set(worker, free)
	}
}

func (a *advertisedFree) forget(worker string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.free, worker)
}

// pingAfterIdle is how long a pooled PostgreSQL connection may sit idle
// before it is pinged on reuse. pgx's default, one second, made a ping
// (which the server counts as a transaction) precede every beat and every
// idle claim: half of an idle supervisor's transactions. A connection
// broken meanwhile fails its next statement instead, which every caller
// already retries. A connection reused for the first time since it was
// opened is not pinged either: pgx counts its idle time from the zero time,
// so it saturates (math.MaxInt64), and made every reconnect cost a ping.
const pingAfterIdle = 30 * time.Second

// openPostgres opens the pool of dsn with pingAfterIdle.
func openPostgres(dsn string) (gorm.Dialector, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse the PostgreSQL URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg, stdlib.OptionShouldPing(func(_ context.Context, p stdlib.ShouldPingParams) bool {
		return p.IdleDuration > pingAfterIdle && p.IdleDuration < math.MaxInt64
	}))
	return postgres.New(postgres.Config{Conn: db}), nil
}

// listenDuty is migration 6: the wake-up trigger that wakes only a
// supervisor that listens (listeningSQL). The baseline, which runs first
// on every migrate, installs it; the step only records the version, so
// that a supervisor that needs this trigger refuses a database not
// migrated since (it would wake supervisors that do not listen, and their
// jobs would wait a beat).
func (*Store) listenDuty(*gorm.DB) error { return nil }

// Holding tells the store how many jobs the supervisor runs now: while
// any runs (and a while after) its pool keeps idle connections rather than
// one (see pool.hold).
func (s *Store) Holding(jobs int) {
	if s.pool != nil {
		s.pool.hold(jobs)
	}
}

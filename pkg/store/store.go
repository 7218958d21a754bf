// Package store is the job queue: claims, leases, heartbeats and every write
// the worker makes about builds, runs and documents. The SQL that differs
// between SQLite and PostgreSQL lives in one dialect per database; everything
// else is shared.
package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/ade-org/ade-worker/pkg/settings"
)

// ErrLeaseLost is returned by fenced writes when the job is no longer held by
// this worker at this attempt: someone else owns it now, so nothing is written.
var ErrLeaseLost = errors.New("lease lost: the job is no longer held by this worker")

// ErrNotFound is returned when a job, document or configuration row is missing.
var ErrNotFound = errors.New("not found")

// Options tune how the database is opened.
type Options struct {
	SQLiteJournalMode string
	SQLiteSynchronous string
	SQLiteBusyTimeout time.Duration
	// MustExist opens an SQLite file only when it exists (ErrNoDatabase
	// otherwise), creating neither it nor its folder: every command but
	// migrate and the worker loop, so a mistyped path is not a new empty
	// database.
	MustExist bool
	// PoolSize is the most connections the pool opens (0: the dialect's
	// default); an idle pool keeps one (see configurePool).
	PoolSize int
	// ListenDSN is where PostgreSQL's LISTEN connection goes ("": the
	// pool's URL). It may go straight to the server while the pool goes
	// through pgbouncer in transaction mode: one that differs from the
	// pool's URL says the pool goes through a pooler, so the pool sends no
	// named prepared statements (see postgresDSN).
	ListenDSN string
	// AppName is the application_name PostgreSQL shows for every
	// connection, unless the URL names one.
	AppName string
}

// ErrNoDatabase is returned by Open with MustExist when the SQLite file is
// missing.
var ErrNoDatabase = errors.New("no database")

// Store is the worker's handle on the database.
type Store struct {
	db      *gorm.DB
	dialect dialect
	// watchTarget is what WatchQueue watches: the PostgreSQL DSN or the
	// SQLite file.
	watchTarget string
	// file is the identity of the SQLite file opened (nil on PostgreSQL);
	// see CheckFile.
	file *fileID
	// policy is the claims' order and cap (SetClaimPolicy).
	policy ClaimPolicy
	// everyFirst is, for builds and runs, whether the last fair claim
	// needed every workspace's heads and found few workspaces (claimFrom).
	everyFirst [2]atomic.Bool
	// claimSQL holds the claim's statements as made (claimStatement).
	claimSQL sync.Map
	// name is the database as operators know it, without a password: the
	// SQLite path, or PostgreSQL's host/dbname.
	name string
	// pool keeps the connection pool's idle connections few (pool.go).
	pool *pool
	// advertised is the free-slot count this process last wrote for each
	// supervisor (advertiseFree, BeatWorker).
	advertised advertisedFree
}

// Open connects to the database named by u.
func Open(ctx context.Context, u settings.DatabaseURL, opts Options) (*Store, error) {
	cfg := &gorm.Config{Logger: logger.Discard, PrepareStmt: false, SkipDefaultTransaction: true}
	var (
		dial   gorm.Dialector
		d      dialect
		target string
	)
	switch u.Driver {
	case settings.SQLite:
		if _, err := os.Stat(u.Path); opts.MustExist && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: run 'supervisor migrate' first or set ADE_DATABASE_URL", ErrNoDatabase, u.Path)
		}
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, fmt.Errorf("create database folder: %w", err)
		}
		// An existing file is opened without create: a connection the
		// pool opens after the file was deleted must fail, not start an
		// empty database beside the real one (see CheckFile).
		_, statErr := os.Stat(u.Path)
		keepSQLiteMemory()
		dial = sqlite.New(sqlite.Config{DriverName: sqliteDriverName, DSN: sqliteDSN(u.Path, opts, statErr == nil)})
		d, target = sqliteDialect{}, u.Path
	case settings.Postgres:
		pooled := opts.ListenDSN != "" && opts.ListenDSN != u.DSN
		dsn, err := postgresDSN(u.DSN, opts.AppName, pooled)
		if err != nil {
			return nil, err
		}
		target = dsn
		if pooled {
			if target, err = postgresDSN(opts.ListenDSN, opts.AppName, false); err != nil {
				return nil, err
			}
		}
		if dial, err = openPostgres(dsn); err != nil {
			return nil, err
		}
		d = postgresDialect{}
	default:
		return nil, fmt.Errorf("unsupported database driver %q", u.Driver)
	}
	db, err := gorm.Open(dial, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	pool := newPool(sqlDB, d, opts.PoolSize)
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	st := &Store{db: db, dialect: d, watchTarget: target, name: u.Name(), pool: pool}
	if u.Driver == settings.SQLite {
		id, err := statID(u.Path)
		if err != nil {
			sqlDB.Close()
			return nil, fmt.Errorf("stat the database file: %w", err)
		}
		st.file = &id
	}
	return st, nil
}

func sqliteDSN(path string, opts Options, exists bool) string {
	q := url.Values{}
	if exists {
		q.Set("mode", "rw")
	}
	q.Set("_journal_mode", orDefault(opts.SQLiteJournalMode, "WAL"))
	q.Set("_synchronous", orDefault(opts.SQLiteSynchronous, "NORMAL"))
	busy := opts.SQLiteBusyTimeout
	if busy == 0 {
		busy = 30 * time.Second
	}
	q.Set("_busy_timeout", fmt.Sprint(busy.Milliseconds()))
	q.Set("_foreign_keys", "1")
	// Transactions write, so take the write lock at BEGIN: a deferred
	// transaction that later upgrades can fail with SQLITE_BUSY at once.
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// Close releases the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	s.pool.stop()
	return sqlDB.Close()
}

// Ping makes one round trip to the database (readiness probes).
func (s *Store) Ping(ctx context.Context) error {
	return s.db.WithContext(ctx).Exec("SELECT 1").Error
}

// Name is the database as operators know it, safe to log: the SQLite file's
// path, or PostgreSQL's host:port/dbname (never a password).
func (s *Store) Name() string { return s.name }

// Dialect names the database kind ("sqlite" or "postgres").
func (s *Store) Dialect() string { return s.dialect.name() }

// NamesCancels reports whether WatchQueue names each cancelled job as it
// happens (PostgreSQL's NOTIFY); where it does not (SQLite: a file changed),
// the supervisor's check of its running jobs' rows is how cancels are seen.
func (s *Store) NamesCancels() bool { return s.dialect.namesCancels() }

// tx runs fn in one transaction.
func (s *Store) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.db.WithContext(ctx).Transaction(fn)
}

// ts encodes a time the way the database stores it.
func (s *Store) ts(t time.Time) any { return s.dialect.timeArg(t) }

// dialect is everything that differs between the databases.
type dialect interface {
	name() string
	// defaultPoolSize is the pool when Options.PoolSize is 0; trimIdle
	// says whether idle connections cost a server (see pool.go).
	defaultPoolSize() int
	trimIdle() bool
	// tryGCLock takes the garbage collector's lock without waiting (see
	// Store.TryGCLock).
	tryGCLock(ctx context.Context, s *Store) (release func(), ok bool, err error)
	// likely marks a condition the planner should expect to hold (the
	// condition itself where the planner needs no hint).
	likely(cond string) string
	timeArg(t time.Time) any
	// nowSQL is the database's clock as an SQL expression, in the layout
	// stored times use; laterSQL(secs) is that clock plus secs seconds (an
	// SQL expression of type double precision). Every time the queue
	// compares or stores comes from them: hosts' clocks drift, the
	// database is the one clock all supervisors share.
	nowSQL() string
	laterSQL(secs string) string
	// clockLaterSQL is laterSQL on the clock as the comparison reads it,
	// not as the statement began: a statement that waited for a row
	// another one wrote meanwhile must not find that row's fresh time
	// "too far ahead" of its own older now.
	clockLaterSQL(secs string) string
	// untilSQL is the seconds from the database's now until the time
	// the scalar subquery q returns (NULL when q is NULL).
	untilSQL(q string) string
	// jobListSQL matches an UPDATE's rows (by id and attempt_count) to a
	// list of jobs in one JSON argument, [{"vid": id, "vattempt": n}, ...]:
	// a FROM clause (may be empty) and a condition.
	jobListSQL() (from, cond string)
	// renewAll runs lease renewals (UPDATE ... RETURNING kind, id,
	// attempt_count; one per job kind) as one unit and returns every row
	// they renewed.
	renewAll(db *gorm.DB, stmts []statement) ([]renewedRow, error)
	// claimSQL makes the claim of the jobs of q that pick (a SELECT of
	// j.id, after the common table expressions with) selects.
	claimSQL(q queueKind, with, pick string) string
	// eachRowSQL is a FROM clause joining each row of outer to the rows
	// of q's table (as c) that sub selects, a query correlated with outer
	// that selects cols (the key columns of j it is given) and ends in a
	// LIMIT.
	eachRowSQL(q queueKind, outer string, sub func(cols string) string) string
	// listSQL is a FROM item l of the strings of the JSON array arg: l.id,
	// and l.pos its place in the array.
	listSQL(arg string) string
	// claimLockSQL is taken by claims that count against a cap ("" when
	// claims are one at a time anyway).
	claimLockSQL() string
	// indexedBy is the hint that makes the planner read a table through
	// index ("" where the planner needs none).
	indexedBy(index string) string
	// moveDocumentSQL is one statement that moves a document and records the
	// change (named arguments, see moveDocumentArgs), or "" where the two
	// statements of moveDocument must run in a transaction instead. Fenced,
	// it first takes the run's row (FOR SHARE) under the fence and changes
	// nothing unless the fence holds; it returns the column held (0 or 1).
	moveDocumentSQL(fenced bool) string
	// finishRunSQL is all of FinishRun in one statement (named arguments,
	// see FinishRun; each result table's rows a JSON array of objects keyed
	// by column, the argument named by the table, see resultRowsJSON), or
	// "" where its writes run one by one in a transaction (SQLite, where
	// gorm's inserts are cheaper than unpacking JSON). It returns the
	// column ended (0: the fence did not hold, nothing was written).
	finishRunSQL(withDocument bool) string
	migrations() []string
	// columnsSQL lists every (table_name, column_name) of the schema;
	// tableExistsSQL counts the tables named by its one argument.
	columnsSQL() string
	tableExistsSQL() string
	// migrationLockSQL takes the migration lock (exclusive, or shared)
	// for the transaction, its one argument the key; "" when beginning
	// the transaction took it already.
	migrationLockSQL(shared bool) string
	createMigrationsSQL() string
	// timestampType is the column type of times the worker's own tables
	// store (what nowSQL gives).
	timestampType() string
	watch(ctx context.Context, target string, w Watch) error
	// namesCancels: watch reports each cancelled job by name as it
	// happens, not only that something changed.
	namesCancels() bool
	// pauseTriggers are the migration statements that make a resume wake
	// idle supervisors (none where watch sees every write).
	pauseTriggers() []string
	// notifies: the store wakes supervisors by notifications it sends to
	// whom it chooses (PostgreSQL's NOTIFY), rather than every write
	// waking them all (SQLite's file watch).
	notifies() bool
	// beat runs a supervisor's beat (BeatWorker) in as few round trips as
	// the dialect can.
	beat(ctx context.Context, s *Store, q beatQueries) (beatCounts, error)
}

// sqliteTimeLayout is how the ADE API writes timestamps on SQLite: naive UTC
// text that sorts in time order, so comparisons can use indexes.
const sqliteTimeLayout = "2006-01-02 15:04:05.000000"

// Time is a timestamp read from either database; SQLite hands back text in
// several layouts, PostgreSQL a time.Time.
type Time struct {
	time.Time
	Valid bool
}

var timeLayouts = []string{
	sqliteTimeLayout, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05",
	"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999-07:00",
	time.RFC3339Nano, "2006-01-02",
}

// Value implements driver.Valuer, so gorm accepts Time as a column type.
func (t Time) Value() (driver.Value, error) {
	if !t.Valid {
		return nil, nil
	}
	return t.Time, nil
}

// Scan implements sql.Scanner.
func (t *Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*t = Time{}
		return nil
	case time.Time:
		*t = Time{Time: x.UTC(), Valid: true}
		return nil
	case string:
		return t.parse(x)
	case []byte:
		return t.parse(string(x))
	default:
		return fmt.Errorf("cannot read %T as a timestamp", v)
	}
}

func (t *Time) parse(s string) error {
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if p, err := time.Parse(layout, s); err == nil {
			*t = Time{Time: p.UTC(), Valid: true}
			return nil
		}
	}
	return fmt.Errorf("cannot parse timestamp %q", s)
}

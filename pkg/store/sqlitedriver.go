package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// sqliteDriverName is mattn's SQLite driver with a prepared-statement cache
// per connection. Profiled on the engine-realistic bench, preparing each
// statement anew was a sixth of the supervisor's CPU (go-sqlite3 prepares
// and finalizes on every Exec and Query, and gorm's own cache re-prepares
// in every transaction), and fetching each row on a goroutine of its own (go-sqlite3's
// way of honouring a cancellable context) was another tenth.
const sqliteDriverName = "sqlite3-ade"

func init() {
	sql.Register(sqliteDriverName, cachingDriver{&sqlite3.SQLiteDriver{}})
}

type cachingDriver struct{ d *sqlite3.SQLiteDriver }

func (d cachingDriver) Open(dsn string) (driver.Conn, error) {
	c, err := d.d.Open(dsn)
	if err != nil {
		return nil, err
	}
	return &cachingConn{SQLiteConn: c.(*sqlite3.SQLiteConn), stmts: map[string]*cachedStmt{}}, nil
}

// cachingConn keeps each single statement it ran prepared, keyed by its
// text. database/sql uses a connection from one goroutine at a time, so
// the cache needs no lock.
type cachingConn struct {
	*sqlite3.SQLiteConn
	stmts map[string]*cachedStmt
	// changes reads sqlite3_changes() and last_insert_rowid(), which
	// go-sqlite3 does not expose, for an Exec through the cache.
	changes *sqlite3.SQLiteStmt
}

type cachedStmt struct {
	s *sqlite3.SQLiteStmt
	// busy: its rows are still open (a query inside another's loop gets a
	// statement of its own).
	busy bool
}

// maxCachedStmts bounds the cache: statements with IN lists of varying
// length are distinct texts.
const maxCachedStmts = 200

// cached returns the statement for query, or nil when it must go the
// uncached way: several statements in one string (go-sqlite3 runs the tail
// only on its own path), or the cached one still in use.
func (c *cachingConn) cached(query string) (*cachedStmt, error) {
	if strings.Contains(strings.TrimRight(query, "; \t\r\n"), ";") {
		return nil, nil
	}
	if st, ok := c.stmts[query]; ok {
		if st.busy {
			return nil, nil
		}
		return st, nil
	}
	if len(c.stmts) >= maxCachedStmts {
		c.dropCache()
	}
	s, err := c.SQLiteConn.Prepare(query)
	if err != nil {
		return nil, err
	}
	st := &cachedStmt{s: s.(*sqlite3.SQLiteStmt)}
	c.stmts[query] = st
	return st, nil
}

// dropCache finalizes the cached statements, except those whose rows are
// still open (an outer query's loop): those are kept.
func (c *cachingConn) dropCache() {
	for q, st := range c.stmts {
		if !st.busy {
			_ = st.s.Close()
			delete(c.stmts, q)
		}
	}
}

// QueryContext runs a cached statement. Rows are fetched on the caller's
// goroutine (a context without cancel): a read never waits for SQLite's
// write lock in WAL mode, and a transaction's reads come after its
// BEGIN IMMEDIATE already took it.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	st, err := c.cached(query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.SQLiteConn.QueryContext(ctx, query, args)
	}
	rows, err := st.s.QueryContext(context.WithoutCancel(ctx), args)
	if err != nil {
		return nil, err
	}
	st.busy = true
	return &cachedRows{SQLiteRows: rows.(*sqlite3.SQLiteRows), st: st}, nil
}

// ExecContext runs a cached statement to its end and resets it (a statement
// left mid-way would hold its transaction open), then reads what it
// changed. Outside a transaction a write may wait for the write lock, so
// it keeps the caller's context, which can interrupt that wait.
func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, err := c.cached(query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return c.SQLiteConn.ExecContext(ctx, query, args)
	}
	if !c.SQLiteConn.AutoCommit() {
		ctx = context.WithoutCancel(ctx)
	}
	if err := drain(st.s.QueryContext(ctx, args)); err != nil {
		return nil, err
	}
	if c.changes == nil {
		s, err := c.SQLiteConn.Prepare(`SELECT changes(), last_insert_rowid()`)
		if err != nil {
			return nil, err
		}
		c.changes = s.(*sqlite3.SQLiteStmt)
	}
	rows, err := c.changes.QueryContext(context.Background(), nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	v := make([]driver.Value, 2)
	if err := rows.Next(v); err != nil {
		return nil, err
	}
	changed, _ := v[0].(int64)
	id, _ := v[1].(int64)
	return result{id: id, changed: changed}, nil
}

// drain steps rows to their end (RETURNING rows are discarded) and resets
// the statement.
func drain(rows driver.Rows, err error) error {
	if err != nil {
		return err
	}
	v := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(v); err != nil {
			closeErr := rows.Close()
			if errors.Is(err, io.EOF) {
				return closeErr
			}
			return err
		}
	}
}

func (c *cachingConn) Close() error {
	for _, st := range c.stmts {
		_ = st.s.Close()
	}
	c.stmts = nil
	if c.changes != nil {
		_ = c.changes.Close()
	}
	return c.SQLiteConn.Close()
}

// cachedRows is go-sqlite3's rows (with their column-type methods) that
// free the statement for the next use when closed.
type cachedRows struct {
	*sqlite3.SQLiteRows
	st *cachedStmt
}

func (r *cachedRows) Close() error {
	r.st.busy = false
	return r.SQLiteRows.Close() // resets the statement, keeps it prepared
}

type result struct{ id, changed int64 }

func (r result) LastInsertId() (int64, error) { return r.id, nil }
func (r result) RowsAffected() (int64, error) { return r.changed, nil }

package pgtemp

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// A database of its own costs a test about 140 ms on this server (CREATE
// DATABASE copies the template's catalogs through the WAL) and another 50 ms
// to drop, and the server does them one at a time: a package of a hundred
// PostgreSQL subtests spent most of its time there. A schema that is
// migrated once and emptied after each test costs a few milliseconds, so
// the tests that only read and write rows share one database of schemas.

// pool is one database per admin URL and its migrated, empty schemas.
type pool struct {
	once  sync.Once
	err   error
	admin string
	url   string       // the pool database
	drop  func() error // drops it
	// conns serve the pool's own statements: a new server process per
	// statement cost about as much as the statement.
	conns *pgxpool.Pool
	mu    sync.Mutex
	free  []string // schemas that are empty and migrated
	// tables are a migrated schema's tables but the migration records,
	// the same in every schema (read once: information_schema is slow).
	tables []string
}

var pools perAdmin[pool]

// Schema returns the URL of a migrated schema with no rows, of a database
// this process shares among its tests; when t ends the schema is emptied
// and handed to the next test. Each test has the schema to itself. A test
// that changes the schema (DDL) or needs the database to itself must use
// Migrated instead. Notifications are per database: a test that listens
// may hear another test's jobs (the store's listeners ignore jobs they do
// not hold).
func Schema(t testing.TB) string {
	t.Helper()
	p := poolFor(TestAdminURL())
	name, err := p.take()
	if err != nil {
		t.Fatalf("PostgreSQL is required (set ADE_TEST_POSTGRES_URL): %v", err)
	}
	t.Cleanup(func() {
		if err := p.give(name); err != nil {
			t.Error(err)
		}
	})
	return p.schemaURL(name)
}

// EmptySchema returns the URL of a new schema with nothing in it, of the
// database Schema's schemas live in, dropped when t ends: for a test that
// migrates, or breaks, a database of its own (creating one costs about
// 140 ms, a schema a few).
func EmptySchema(t testing.TB) string {
	t.Helper()
	p := poolFor(TestAdminURL())
	if err := p.init(); err != nil {
		t.Fatalf("PostgreSQL is required (set ADE_TEST_POSTGRES_URL): %v", err)
	}
	name := "e_" + strings.ReplaceAll(store.NewID(), "-", "")[:16]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return p.schemaURL(name)
}

func poolFor(admin string) *pool {
	return pools.get(admin, func() *pool { return &pool{admin: admin} })
}

func (p *pool) schemaURL(name string) string {
	u, _ := url.Parse(p.url)
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// init makes the pool's database, once.
func (p *pool) init() error {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p.url, p.drop, p.err = create(ctx, p.admin, "ade_schemas", "", true)
		if p.err == nil {
			p.conns, p.err = pgxpool.New(ctx, p.url)
		}
	})
	return p.err
}

// take returns a free schema, or makes and migrates a new one.
func (p *pool) take() (string, error) {
	if err := p.init(); err != nil {
		return "", err
	}
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		name := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return name, nil
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "s_" + strings.ReplaceAll(store.NewID(), "-", "")[:16]
	if err := p.exec(ctx, "CREATE SCHEMA "+name); err != nil {
		return "", fmt.Errorf("create schema %s: %w", name, err)
	}
	parsed, err := settings.ParseDatabaseURL(p.schemaURL(name))
	if err != nil {
		return "", err
	}
	s, err := store.Open(ctx, parsed, store.Options{})
	if err != nil {
		return "", fmt.Errorf("open schema %s: %w", name, err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		return "", fmt.Errorf("migrate schema %s: %w", name, err)
	}
	return name, nil
}

// give empties the schema's tables (all but the migration records) and
// puts it back; a schema that cannot be emptied is dropped instead.
func (p *pool) give(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tables, err := p.tableNames(ctx, name)
	if err == nil && len(tables) > 0 {
		// DELETE, not TRUNCATE: on tables of a few rows TRUNCATE's new
		// files and their fsyncs cost ten times more. Foreign-key
		// triggers are off for the statement (replica role), so the
		// tables need no order.
		stmts := []string{"SET session_replication_role = replica"}
		for _, table := range tables {
			stmts = append(stmts, "DELETE FROM "+name+"."+table)
		}
		stmts = append(stmts, "SET session_replication_role = DEFAULT")
		err = p.exec(ctx, strings.Join(stmts, "; "))
	}
	if err != nil {
		_ = p.exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
		return fmt.Errorf("empty schema %s: %w", name, err)
	}
	p.mu.Lock()
	p.free = append(p.free, name)
	p.mu.Unlock()
	return nil
}

// tableNames lists the tables give empties, from the first schema given.
func (p *pool) tableNames(ctx context.Context, name string) ([]string, error) {
	p.mu.Lock()
	tables := p.tables
	p.mu.Unlock()
	if tables != nil {
		return tables, nil
	}
	rows, err := p.conns.Query(ctx, `SELECT quote_ident(table_name) FROM information_schema.tables
		WHERE table_schema = $1 AND table_type = 'BASE TABLE' AND table_name <> 'ade_worker_migrations'`, name)
	if err != nil {
		return nil, err
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.tables = tables
	p.mu.Unlock()
	return tables, nil
}

func (p *pool) exec(ctx context.Context, stmt string) error {
	// The simple protocol: one round trip for several statements.
	_, err := p.conns.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
	return err
}

// dropPools drops the schema databases this process made.
func dropPools() {
	for _, p := range pools.takeAll() {
		if p.conns != nil {
			p.conns.Close()
		}
		if p.drop != nil {
			_ = p.drop()
		}
	}
}

package pgtemp

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	code := m.Run()
	DropTemplates()
	os.Exit(code)
}

func adminConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, TestAdminURL())
	if err != nil {
		t.Fatalf("PostgreSQL is required (set ADE_TEST_POSTGRES_URL): %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// TestDatabasesInRAM: on a server of this host, a test's database lies in
// the process's tablespace on tmpfs; Create's (the bench's) does not.
func TestDatabasesInRAM(t *testing.T) {
	if os.Getenv(ramTablespaceMode) == "off" {
		t.Skip(ramTablespaceMode + "=off")
	}
	conn := adminConn(t)
	if _, ok := localServerOwner(context.Background(), conn); !ok {
		t.Skip("the server does not run on this host")
	}
	where := func(dbURL string) (name, dir string) {
		u, _ := url.Parse(dbURL)
		if err := conn.QueryRow(context.Background(), `SELECT t.spcname, pg_tablespace_location(t.oid)
			FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1`,
			strings.TrimPrefix(u.Path, "/")).Scan(&name, &dir); err != nil {
			t.Fatal(err)
		}
		return name, dir
	}
	name, dir := where(ForTest(t, "ade_pgtemp_test"))
	if !strings.HasPrefix(name, ramPrefix) || !strings.HasPrefix(dir, ramRoot+"/") {
		t.Fatalf("test database in tablespace %q at %q, want one of %s under %s", name, dir, ramPrefix, ramRoot)
	}
	dbURL, drop, err := Create(context.Background(), TestAdminURL(), "ade_pgtemp_test")
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	if name, _ := where(dbURL); name != "pg_default" {
		t.Fatalf("Create's database in tablespace %q, want pg_default", name)
	}
}

// TestStaleTablespaceDropped: a killed test process's tablespace, and the
// database it left there, are dropped by the next process; one whose
// owner still holds its lock is kept.
func TestStaleTablespaceDropped(t *testing.T) {
	conn := adminConn(t)
	ctx := context.Background()
	owner, ok := localServerOwner(ctx, conn)
	if !ok {
		t.Skip("the server does not run on this host")
	}
	space := func(name string, held bool) {
		dir := filepath.Join(ramRoot, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		lock, err := os.Create(filepath.Join(dir, ramLockName))
		if err != nil {
			t.Fatal(err)
		}
		if held {
			t.Cleanup(func() { lock.Close() })
			if err := flockNB(lock); err != nil {
				t.Fatal(err)
			}
		} else {
			lock.Close() // its process died
		}
		if err := os.Chown(dir, int(owner.Uid), int(owner.Gid)); err != nil {
			t.Skipf("cannot give a folder to the server's user: %v", err)
		}
		for _, stmt := range []string{"CREATE TABLESPACE " + name + " LOCATION '" + dir + "'",
			"CREATE DATABASE " + name + "_db TABLESPACE " + name} {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+"_db")
			conn.Exec(ctx, "DROP TABLESPACE IF EXISTS "+name)
		})
	}
	dead, live := ramPrefix+"test_dead", ramPrefix+"test_live"
	space(dead, false)
	space(live, true)
	dropStaleRAMTablespaces(ctx, conn)
	var left []string
	rows, err := conn.Query(ctx, `SELECT spcname::text FROM pg_tablespace WHERE spcname IN ($1, $2)
		UNION ALL SELECT datname::text FROM pg_database WHERE datname IN ($1 || '_db', $2 || '_db') ORDER BY 1`, dead, live)
	if err == nil {
		left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(left, " ") != live+" "+live+"_db" {
		t.Fatalf("left %v, want only the live process's tablespace and database", left)
	}
	if _, err := os.Stat(filepath.Join(ramRoot, dead)); !os.IsNotExist(err) {
		t.Errorf("the dead process's folder: %v, want it removed", err)
	}
}

// TestCommitsAsynchronous: a test's database does not wait for WAL flushes;
// Create's (the bench's) keeps the server's default.
func TestCommitsAsynchronous(t *testing.T) {
	ctx := context.Background()
	setting := func(dbURL string) string {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, "SHOW synchronous_commit").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := setting(ForTest(t, "ade_pgtemp_test")); got != "off" {
		t.Errorf("test database: synchronous_commit = %s, want off", got)
	}
	dbURL, drop, err := Create(ctx, TestAdminURL(), "ade_pgtemp_test")
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	if got := setting(dbURL); got != "on" {
		t.Errorf("Create's database: synchronous_commit = %s, want the server's on", got)
	}
}

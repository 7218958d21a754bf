// Package pgtemp makes throw-away PostgreSQL databases for the tests and the
// bench tool: each gets a fresh database of its own and drops it afterwards.
package pgtemp

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ade-org/ade-worker/pkg/store"
)

// DefaultAdminURL is the local server's maintenance database (trust auth).
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// TestAdminURL is where tests create their databases: $ADE_TEST_POSTGRES_URL,
// else DefaultAdminURL.
func TestAdminURL() string {
	if u := os.Getenv("ADE_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// Create makes an empty database named prefix_<random> through the admin
// URL and returns its URL and how to drop it (connections still open to it
// are closed by the drop).
func Create(ctx context.Context, admin, prefix string) (string, func() error, error) {
	return create(ctx, admin, prefix, "", false)
}

// create makes a database named prefix_<random>, a copy of the database
// tmpl unless tmpl is "". One forTests trades durability for speed: it lies
// in the process's tablespace on tmpfs where the server allows it (see
// ramTablespace), and its commits are asynchronous.
func create(ctx context.Context, admin, prefix, tmpl string, forTests bool) (string, func() error, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("admin URL: %w", err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL at %s: %w", u.Redacted(), err)
	}
	defer conn.Close(ctx)
	name := prefix + "_" + strings.ReplaceAll(store.NewID(), "-", "")[:16]
	stmt, what := "CREATE DATABASE "+name, name
	if tmpl != "" {
		// Copies may run at once; each waits for none of the others.
		stmt, what = stmt+" TEMPLATE "+tmpl, name+" from template "+tmpl
	}
	if forTests {
		if ts := ramTablespace(ctx, admin, conn); ts != "" {
			stmt += " TABLESPACE " + ts
		}
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", what, err)
	}
	if forTests {
		// A commit waits for no WAL flush: a test database need not
		// survive the server's crash (the tests that crash a server use a
		// cluster of their own), and flushes were a tenth of its time.
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" SET synchronous_commit = off"); err != nil {
			_ = dropper(admin, name)()
			return "", nil, fmt.Errorf("set up database %s: %w", name, err)
		}
	}
	u.Path = "/" + name
	return u.String(), dropper(admin, name), nil
}

// dropper drops the database name through the admin URL, closing the
// connections still open to it.
func dropper(admin, name string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
}

// ForTest returns the URL of a fresh database dropped when t ends; t fails
// at once when PostgreSQL cannot be reached.
func ForTest(t testing.TB, prefix string) string {
	t.Helper()
	dbURL, drop, err := create(context.Background(), TestAdminURL(), prefix, "", true)
	if err != nil {
		t.Fatalf("PostgreSQL is required (set ADE_TEST_POSTGRES_URL): %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return dbURL
}

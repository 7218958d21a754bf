package pgtemp

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// templates holds one migrated template database per admin URL, made on
// first use in this process: copying it (CREATE DATABASE ... TEMPLATE, about
// 60 ms) is several times faster than creating and migrating a database.
var templates perAdmin[template]

type template struct {
	once sync.Once
	name string
	drop func() error
	err  error
}

// Migrated returns the URL of a fresh database named prefix_<random> that
// holds the worker's migrated schema, dropped when t ends; t fails at once
// when PostgreSQL cannot be reached. The process's template database is
// dropped by DropTemplates (call it from TestMain).
func Migrated(t testing.TB, prefix string) string {
	t.Helper()
	admin := TestAdminURL()
	tmpl, err := migratedTemplate(admin)
	if err != nil {
		t.Fatalf("PostgreSQL is required (set ADE_TEST_POSTGRES_URL): %v", err)
	}
	dbURL, drop, err := create(context.Background(), admin, prefix, tmpl, true)
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

// migratedTemplate makes (once per admin URL) a database and migrates it;
// no connection to it stays open, as a template copy requires.
func migratedTemplate(admin string) (string, error) {
	tp := templates.get(admin, func() *template { return &template{} })
	tp.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dbURL, drop, err := create(ctx, admin, "ade_template", "", true)
		if err != nil {
			tp.err = err
			return
		}
		tp.drop = drop
		u, _ := url.Parse(dbURL)
		tp.name = strings.TrimPrefix(u.Path, "/")
		parsed, err := settings.ParseDatabaseURL(dbURL)
		if err != nil {
			tp.err = err
			return
		}
		s, err := store.Open(ctx, parsed, store.Options{})
		if err != nil {
			tp.err = fmt.Errorf("open template database %s: %w", tp.name, err)
			return
		}
		defer s.Close()
		if err := s.Migrate(ctx); err != nil {
			tp.err = fmt.Errorf("migrate template database %s: %w", tp.name, err)
		}
	})
	return tp.name, tp.err
}

// DropTemplates drops the template and schema databases this process made,
// then its tablespace on tmpfs (call it from TestMain: every database
// in it must be gone).
func DropTemplates() {
	dropPools()
	defer dropRAMTablespaces()
	for _, tp := range templates.takeAll() {
		if tp.drop != nil {
			_ = tp.drop()
		}
	}
}

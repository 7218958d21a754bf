package store_test

import (
	"context"
	"errors"
	neturl "net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// schemaOf describes every table, column, index, constraint and trigger.
func schemaOf(t *testing.T, e *env) []string {
	t.Helper()
	var out []string
	if e.backend == "sqlite" {
		e.scan(t, &out, `SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY type, name`)
		return out
	}
	// current_schema(): the tests' databases may be one schema of many.
	e.scan(t, &out, `SELECT * FROM (
		SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || COALESCE(column_default, '') AS d
			FROM information_schema.columns WHERE table_schema = current_schema()
		UNION ALL SELECT 'index ' || indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
		UNION ALL SELECT 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
			WHERE connamespace = current_schema()::regnamespace
		UNION ALL SELECT 'trigger ' || tgname || ': ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
			AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = current_schema()::regnamespace)
		UNION ALL SELECT 'function ' || proname || ': ' || prosrc FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
	) AS s ORDER BY d`)
	return out
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		runID := e.run(t, "", t0, t0)
		before := schemaOf(t, e)
		if len(before) < 8 {
			t.Fatalf("schema after migrate looks empty: %q", before)
		}
		if err := e.s.Migrate(ctx); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		if after := schemaOf(t, e); !reflect.DeepEqual(before, after) {
			t.Errorf("second migrate changed the schema:\nbefore %q\nafter  %q", before, after)
		}
		if r := e.runRow(t, runID); r.Status != "queued" {
			t.Errorf("run after second migrate: %+v", r)
		}
		if err := e.s.CheckMigrated(ctx); err != nil {
			t.Errorf("CheckMigrated after migrate: %v", err)
		}
	})
}

func TestCheckMigrated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		prepare func(t *testing.T, e *env) // on a migrated database
		wantErr bool
	}{
		{name: "empty database", wantErr: true},
		{name: "migrated", prepare: func(t *testing.T, e *env) {}},
		// An ADE API database, or one migrated before versioned migrations.
		{name: "ADE API database without worker columns", wantErr: true, prepare: func(t *testing.T, e *env) {
			e.exec(t, `ALTER TABLE builds DROP COLUMN claimed_by`)
			e.exec(t, `DROP TABLE ade_worker_migrations`)
		}},
		{name: "migrations not recorded", wantErr: true, prepare: func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM ade_worker_migrations`)
		}},
		// Another program dropped what the baseline made: migrate again
		// completes it, since the baseline runs on every migrate.
		{name: "worker column dropped later", wantErr: true, prepare: func(t *testing.T, e *env) {
			e.exec(t, `ALTER TABLE builds DROP COLUMN claimed_by`)
		}},
		{name: "table missing", wantErr: true, prepare: func(t *testing.T, e *env) {
			e.exec(t, `DROP TABLE run_table_columns`)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pgtemp.EachBackend(t, func(t *testing.T, backend string) {
				ctx := context.Background()
				e := &env{backend: backend, url: newDatabaseURL(t, backend)}
				e.s = pgtemp.Open(t, e.url)
				if tc.prepare != nil {
					if err := e.s.Migrate(ctx); err != nil {
						t.Fatal(err)
					}
					tc.prepare(t, e)
				}
				err := e.s.CheckMigrated(ctx)
				if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, store.ErrNotMigrated)) {
					t.Fatalf("CheckMigrated = %v, want ErrNotMigrated: %v", err, tc.wantErr)
				}
				// Migrate repairs whatever was missing.
				if err := e.s.Migrate(ctx); err != nil {
					t.Fatalf("migrate: %v", err)
				}
				if err := e.s.CheckMigrated(ctx); err != nil {
					t.Fatalf("CheckMigrated after migrate: %v", err)
				}
			})
		})
	}
}

// TestMigrationsRecorded checks that migrate records each step once, with
// the database's time, and that a second migrate adds no row.
func TestMigrationsRecorded(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		type row struct {
			Version int
			Name    string
			Applied int
		}
		read := func() []row {
			var rows []row
			e.scan(t, &rows, `SELECT version, name, CASE WHEN applied_at IS NULL THEN 0 ELSE 1 END AS applied
				FROM ade_worker_migrations ORDER BY version`)
			return rows
		}
		first := read()
		if len(first) == 0 || first[0].Version != 1 || first[0].Applied != 1 || !strings.HasPrefix(first[0].Name, "baseline") {
			t.Fatalf("ade_worker_migrations after migrate = %+v, want version 1 (baseline) with its time", first)
		}
		if err := e.s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		if again := read(); !reflect.DeepEqual(again, first) {
			t.Errorf("second migrate changed ade_worker_migrations: %+v, was %+v", again, first)
		}
	})
}

// TestCheckMigratedReportsFailedQueries: a schema check whose query fails
// says why, never "not migrated": a database that cannot be read is no
// proof of a missing schema.
func TestCheckMigratedReportsFailedQueries(t *testing.T) {
	t.Parallel()
	pgtemp.EachBackend(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		// A database of its own: in a schema of the shared one, the
		// role below could not use the schema at all.
		url := pgtemp.URL(t, backend, filepath.Join(t.TempDir(), "ade.sqlite"), "ade_store")
		s := pgtemp.Open(t, url)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		closed := pgtemp.Open(t, url)
		closed.Close()
		err := closed.CheckMigrated(ctx)
		if err == nil || errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), "database is closed") {
			t.Errorf("CheckMigrated on a closed handle = %v, want the closed database's error", err)
		}
		if backend != "postgres" {
			return
		}
		// A user who may connect but not read the worker's tables:
		// information_schema would hide them and make them look missing.
		role := "ade_noread_" + strings.ReplaceAll(store.NewID(), "-", "")[:12]
		for _, q := range []string{`CREATE ROLE ` + role + ` LOGIN`, `REVOKE ALL ON ade_worker_migrations FROM PUBLIC`} {
			if err := s.TestDB().Exec(q).Error; err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		u, err := neturl.Parse(url)
		if err != nil {
			t.Fatal(err)
		}
		u.User = neturl.User(role)
		noRead := pgtemp.Open(t, u.String())
		t.Cleanup(func() {
			noRead.Close()
			s.TestDB().Exec(`DROP ROLE ` + role)
		})
		err = noRead.CheckMigrated(ctx)
		if err == nil || errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("CheckMigrated without read permission = %v, want the permission error", err)
		}
	})
}

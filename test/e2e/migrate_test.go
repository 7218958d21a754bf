package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentMigrate: eight `supervisor migrate` at once, on a fresh and
// then on a migrated database, all exit 0 and leave one correct schema; a
// worker started among them either works or refuses with the not-migrated
// line, never an SQL error about half a schema.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		dir := t.TempDir()
		dbURL := newDatabase(t, backend, dir)
		env := []string{"PATH=" + os.Getenv("PATH"), "ADE_DATABASE_URL=" + dbURL, "ADE_WORKSPACES_DIR=" + filepath.Join(dir, "ws"),
			"ADE_VENVS_DIR=" + filepath.Join(dir, "venvs"), "ADE_WORKER_LOG_FORMAT=console"}
		for _, round := range []string{"fresh", "migrated"} {
			const n = 8
			var wg sync.WaitGroup
			outs := make([]string, n+1)
			errs := make([]error, n+1)
			run := func(i int, args ...string) {
				defer wg.Done()
				cmd := exec.CommandContext(context.Background(), filepath.Join(binDir, "supervisor"), args...)
				cmd.Env, cmd.Dir = env, dir
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				errs[i] = cmd.Run()
				outs[i] = out.String()
			}
			wg.Add(n + 1)
			for i := range n {
				go run(i, "migrate")
			}
			go run(n, "--exit-when-idle")
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Errorf("%s database: migrate %d of %d at once: %v\n%s", round, i+1, n, errs[i], outs[i])
				}
			}
			worker := outs[n]
			if errs[n] != nil && !strings.Contains(worker, "is not migrated for the worker: run 'supervisor migrate' first") {
				t.Errorf("%s database: a worker started during migrate: %v, want a clean start or the not-migrated line:\n%s", round, errs[n], worker)
			}
			if round == "migrated" && errs[n] != nil {
				t.Errorf("a worker on a migrated database during migrate: %v\n%s", errs[n], worker)
			}
			for _, bad := range []string{"no such table", "does not exist", "SQLSTATE", "panic"} {
				if strings.Contains(worker, bad) {
					t.Errorf("%s database: the worker saw half a schema (%q):\n%s", round, bad, worker)
				}
			}
			checkOneSchema(t, backend, dbURL)
		}
	})
}

// migrationSteps is how many steps pkg/store/migrations.go has.
const migrationSteps = 6

// checkOneSchema: the database is migrated, each step recorded once, and on
// PostgreSQL each wake-up trigger exists once.
func checkOneSchema(t *testing.T, backend, dbURL string) {
	t.Helper()
	w := &world{t: t, backend: backend, env: map[string]string{"ADE_DATABASE_URL": dbURL}}
	w.st = w.open()
	if err := w.st.CheckMigrated(context.Background()); err != nil {
		t.Fatalf("after concurrent migrate: %v", err)
	}
	if n := w.count(`SELECT COUNT(*) FROM ade_worker_migrations`); n != migrationSteps {
		t.Errorf("ade_worker_migrations has %d rows, want one per step (%d)", n, migrationSteps)
	}
	if n := w.count(`SELECT COUNT(DISTINCT version) FROM ade_worker_migrations`); n != migrationSteps {
		t.Errorf("ade_worker_migrations has %d distinct versions, want %d", n, migrationSteps)
	}
	if backend == "postgres" {
		var triggers []string
		if err := w.st.TestDB().Raw(`SELECT tgname FROM pg_trigger WHERE tgname LIKE 'ade_worker_%' ORDER BY tgname`).Scan(&triggers).Error; err != nil {
			t.Fatal(err)
		}
		want := "[ade_worker_builds_cancel ade_worker_builds_notify ade_worker_pauses_notify ade_worker_runs_cancel ade_worker_runs_notify]"
		if fmt.Sprint(triggers) != want {
			t.Errorf("triggers = %v, want %s", triggers, want)
		}
	}
}

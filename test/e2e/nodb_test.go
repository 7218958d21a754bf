package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readCommands are the commands that must find an existing, migrated
// database; each is run with arguments that would otherwise be valid.
func readCommands(t *testing.T) [][]string {
	cfgDir := filepath.Join(repoDir, "test", "config")
	doc := filepath.Join(t.TempDir(), "d.csv")
	if err := os.WriteFile(doc, []byte(csv()), 0o644); err != nil {
		t.Fatal(err)
	}
	return [][]string{
		{"status"}, {"status", "--json"}, {"inspect", "x"}, {"tail", "x"}, {"cancel", "run", "x"}, {"job-spec", "x"}, {"gc", "--dry-run"},
		{"enqueue", "configuration", "--workspace", "w", "--from", cfgDir},
		{"enqueue", "document", "--workspace", "w", "--file", doc},
		{"enqueue", "build", "--workspace", "w", "--configuration", "c"},
		{"enqueue", "run", "--workspace", "w", "--configuration", "c", "--document", "d"},
	}
}

// TestCommandsDoNotCreateDatabases: pointed at a SQLite path that does not
// exist, every command but migrate and the worker says so, exits 1 and
// creates neither the file nor its folder.
func TestCommandsDoNotCreateDatabases(t *testing.T) {
	t.Parallel()
	for _, args := range readCommands(t) {
		dir := t.TempDir()
		path := filepath.Join(dir, "db", "ade.sqlite")
		_, stderr, code := runWith(t, dir, []string{"ADE_DATABASE_URL=sqlite:///" + path}, "supervisor", args...)
		want := "supervisor: no database at " + path + ": run 'supervisor migrate' first or set ADE_DATABASE_URL"
		if code != 1 || strings.TrimSpace(stderr) != want {
			t.Errorf("%v on a missing file: exit %d, stderr %q; want exit 1 and %q", args, code, stderr, want)
		}
		if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
			t.Errorf("%v created %s (stat: %v)", args, filepath.Dir(path), err)
		}
	}
}

// TestCommandsRefuseUnmigratedDatabases: on an existing database that was
// never migrated, every command says so, naming the database without its
// password, and exits 1.
func TestCommandsRefuseUnmigratedDatabases(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		dir := t.TempDir()
		dbURL := newDatabase(t, backend, dir)
		name := filepath.Join(dir, "db", "ade.sqlite")
		if backend == "sqlite" {
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, nil, 0o644); err != nil { // an empty file is an empty database
				t.Fatal(err)
			}
		} else {
			u, err := url.Parse(dbURL)
			if err != nil {
				t.Fatal(err)
			}
			u.User = url.UserPassword(u.User.Username(), "s3cret-pw") // trust auth ignores it
			dbURL = u.String()
			name = u.Host + u.Path
		}
		for _, args := range readCommands(t) {
			_, stderr, code := runWith(t, dir, []string{"ADE_DATABASE_URL=" + dbURL}, "supervisor", args...)
			want := "supervisor: database " + name + " is not migrated for the worker: run 'supervisor migrate' first"
			if code != 1 || !strings.HasPrefix(strings.TrimSpace(stderr), want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("%v on an unmigrated database: exit %d, stderr %q; want exit 1 and one line %q...", args, code, stderr, want)
			}
			if strings.Contains(stderr, "s3cret-pw") {
				t.Errorf("%v showed the password: %q", args, stderr)
			}
		}
	})
}

// TestUnreadableDatabaseIsNotCalledUnmigrated: a schema check whose query
// fails reports that failure, not "not migrated".
func TestUnreadableDatabaseIsNotCalledUnmigrated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ade.sqlite")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database\n", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runWith(t, dir, []string{"ADE_DATABASE_URL=sqlite:///" + path}, "supervisor", "status")
	if code != 1 || strings.Contains(stderr, "not migrated") || !strings.Contains(stderr, "not a database") {
		t.Errorf("status on a file that is not a database: exit %d, stderr %q; want the database error, not 'not migrated'", code, stderr)
	}
}

// TestEmptyDatabaseURLIsUnset: ADE_DATABASE_URL= means the default, and
// the log says which database was chosen.
func TestEmptyDatabaseURLIsUnset(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, stderr, code := runWith(t, dir, []string{"ADE_DATABASE_URL="}, "supervisor", "migrate")
	def := filepath.Join(dir, "data", "db", "ade.sqlite")
	if code != 0 {
		t.Fatalf("migrate with ADE_DATABASE_URL empty: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(def); err != nil {
		t.Errorf("migrate with ADE_DATABASE_URL empty did not use the default %s: %v", def, err)
	}
	if !strings.Contains(stderr, "database chosen") || !strings.Contains(stderr, def) || !strings.Contains(stderr, "unset or empty") {
		t.Errorf("migrate's log does not say which database was chosen and why: %q", stderr)
	}
}

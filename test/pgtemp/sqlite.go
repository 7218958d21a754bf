package pgtemp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// sqliteTemplate is one SQLite file this process migrated, kept in memory:
// a test's copy costs a file write, its own migration about 8 ms of CPU
// (most of the store tests' own CPU on SQLite).
var sqliteTemplate struct {
	once  sync.Once
	bytes []byte
	err   error
}

// MigratedSQLite returns the URL of a fresh SQLite file, in a folder of t,
// that holds the worker's migrated schema and no rows.
func MigratedSQLite(t testing.TB) string {
	t.Helper()
	tp := &sqliteTemplate
	tp.once.Do(func() { tp.bytes, tp.err = migrateSQLiteFile() })
	if tp.err != nil {
		t.Fatal(tp.err)
	}
	path := filepath.Join(t.TempDir(), "ade.sqlite")
	if err := os.WriteFile(path, tp.bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return "sqlite:///" + path
}

// migrateSQLiteFile migrates a new SQLite file and returns its content;
// closing the store folds the write-ahead log into the file.
func migrateSQLiteFile() ([]byte, error) {
	dir, err := os.MkdirTemp("", "ade-sqlite-template-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ade.sqlite")
	u, err := settings.ParseDatabaseURL("sqlite:///" + path)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	s, err := store.Open(ctx, u, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("open the SQLite template: %w", err)
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate the SQLite template: %w", err)
	}
	s.Close()
	if _, err := os.Stat(path + "-wal"); err == nil {
		return nil, fmt.Errorf("the SQLite template's write-ahead log is still there after close")
	}
	return os.ReadFile(path)
}

package pgtemp

import (
	"context"
	"testing"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// Backends are the databases the store and end-to-end tests run on.
var Backends = []string{"sqlite", "postgres"}

// EachBackend runs fn as a parallel subtest per backend.
func EachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	for _, b := range Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// URL returns the URL of a fresh, empty database of backend, removed when t
// ends: the SQLite file sqlitePath (in a folder of the test), or a
// PostgreSQL database named prefix_<random>.
func URL(t testing.TB, backend, sqlitePath, prefix string) string {
	t.Helper()
	if backend == "sqlite" {
		return "sqlite:///" + sqlitePath
	}
	return ForTest(t, prefix)
}

// Open opens the database at rawURL, closed when t ends.
func Open(t testing.TB, rawURL string) *store.Store {
	t.Helper()
	u, err := settings.ParseDatabaseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(context.Background(), u, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

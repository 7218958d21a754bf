package store_test

import (
	"context"
	"database/sql"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/parallel"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// t0 is the fixed time the tests give the rows they insert (created_at and
// the like). The queue reads the database clock, not an argument; t0 lies in
// the past, so a job available at t0 is due.
var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// TestMain runs the tests, then drops the PostgreSQL databases pgtemp made
// for them (the template and the schemas' database).
func TestMain(m *testing.M) {
	flag.Parse()
	// Four at a time on two cores took the package from 10-12 s to 8-9 s.
	parallel.UnlessSet(4)
	code := m.Run()
	pgtemp.DropTemplates()
	os.Exit(code)
}

// newDatabaseURL returns the URL of a fresh, empty database of the backend,
// removed when the test ends: a SQLite file, or an empty PostgreSQL schema
// of its own (a test that migrates or breaks it needs nothing more).
func newDatabaseURL(t testing.TB, backend string) string {
	if backend == "postgres" {
		return pgtemp.EmptySchema(t)
	}
	return pgtemp.URL(t, backend, filepath.Join(t.TempDir(), "ade.sqlite"), "ade_store")
}

// env is one fresh, migrated database.
type env struct {
	backend string
	url     string
	s       *store.Store
	ws      string // workspace id
	cfg     string // configuration id
}

// newEnv opens a fresh migrated database with one configuration: a SQLite
// file it migrates, or an empty migrated schema of pgtemp's shared
// PostgreSQL database (a test that changes the schema makes its own
// database with newDatabaseURL).
func newEnv(t testing.TB, backend string) *env { return newEnvIn(t, backend, pgtemp.Schema) }

// newEnvIn is newEnv with the PostgreSQL database from migrated (SQLite: a
// copy of a file migrated once); a nil migrated means an empty schema or
// file of its own that newEnvIn migrates.
func newEnvIn(t testing.TB, backend string, migrated func(testing.TB) string) *env {
	t.Helper()
	e := &env{backend: backend, ws: store.NewID(), cfg: store.NewID()}
	if backend == "postgres" && migrated != nil {
		e.url = migrated(t)
		e.s = pgtemp.Open(t, e.url)
	} else if backend == "sqlite" && migrated != nil {
		e.url = pgtemp.MigratedSQLite(t)
		e.s = pgtemp.Open(t, e.url)
	} else {
		e.url = newDatabaseURL(t, backend)
		e.s = pgtemp.Open(t, e.url)
		if err := e.s.Migrate(context.Background()); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	// Kept connections, as a busy supervisor's: trimmed to one idle, every
	// statement that overlapped another cost the server a new process
	// (about 40 of the package's 170 connections).
	e.s.Holding(1)
	err := e.s.InsertConfiguration(context.Background(), store.NewConfiguration{ID: e.cfg, WorkspaceID: e.ws, DisplayName: "cfg"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// eachEnv runs fn on a fresh migrated database of every backend.
func eachEnv(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	pgtemp.EachBackend(t, func(t *testing.T, backend string) { fn(t, newEnv(t, backend)) })
}

// newOwnEnv is newEnv with a PostgreSQL database of its own (benchmarks:
// a million rows are not for a shared schema).
func newOwnEnv(t testing.TB, backend string) *env {
	return newEnvIn(t, backend, func(t testing.TB) string { return pgtemp.Migrated(t, "ade_store") })
}

// eachNewEnv is eachEnv with tables that no test used before, for a test
// whose outcome depends on more than rows: the planner's statistics (a
// pooled schema keeps those of the tests before it).
func eachNewEnv(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	pgtemp.EachBackend(t, func(t *testing.T, backend string) { fn(t, newEnvIn(t, backend, nil)) })
}

func (e *env) exec(t testing.TB, query string, args ...any) int64 {
	t.Helper()
	res := e.s.TestDB().Exec(query, args...)
	if res.Error != nil {
		t.Fatalf("%s: %v", query, res.Error)
	}
	return res.RowsAffected
}

func (e *env) scan(t testing.TB, dest any, query string, args ...any) {
	t.Helper()
	res := e.s.TestDB().Raw(query, args...).Scan(dest)
	if res.Error != nil {
		t.Fatalf("%s: %v", query, res.Error)
	}
}

func (e *env) ts(t time.Time) any { return e.s.TestTime(t) }

// doc inserts an uploaded document and returns its id.
func (e *env) doc(t testing.TB) string {
	t.Helper()
	id := store.NewID()
	err := e.s.InsertDocument(context.Background(), store.NewDocument{ID: id, WorkspaceID: e.ws,
		OriginalFilename: "in.xlsx", StoredURI: "files/" + id, Sha256: strings.Repeat("0", 64), ByteSize: 10}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// run queues a run (created at created, available at avail) with its own
// document id, which need not exist.
func (e *env) run(t testing.TB, buildID string, created, avail time.Time) string {
	t.Helper()
	return e.runFor(t, store.NewID(), buildID, created, avail)
}

func (e *env) runFor(t testing.TB, docID, buildID string, created, avail time.Time) string {
	t.Helper()
	id, err := e.s.EnqueueRun(context.Background(), store.NewRun{WorkspaceID: e.ws, ConfigurationID: e.cfg,
		DocumentID: docID, BuildID: buildID, MaxAttempts: 3, AvailableAt: avail}, created)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// build queues a build with a new fingerprint, created an hour before t0,
// and sets its status.
func (e *env) build(t testing.TB, status string) string {
	t.Helper()
	return e.buildAt(t, status, t0.Add(-time.Hour))
}

// buildAt is build with a chosen creation time, which is also its
// available_at.
func (e *env) buildAt(t testing.TB, status string, createdAt time.Time) string {
	t.Helper()
	id, created, err := e.s.EnqueueBuild(context.Background(), store.NewBuild{WorkspaceID: e.ws, ConfigurationID: e.cfg,
		Fingerprint: store.NewID(), MaxAttempts: 3}, createdAt)
	if err != nil || !created {
		t.Fatalf("enqueue build: %v (created %v)", err, created)
	}
	e.exec(t, `UPDATE builds SET status = ? WHERE id = ?`, status, id)
	return id
}

// hold puts a job straight into its running/building state under a lease.
func (e *env) hold(t testing.TB, kind store.Kind, id, worker string, attempt, maxAttempts int, expires *time.Time) {
	t.Helper()
	table, status := "runs", "running"
	if kind == store.KindBuild {
		table, status = "builds", "building"
	}
	var exp any
	if expires != nil {
		exp = e.ts(*expires)
	}
	e.exec(t, `UPDATE `+table+` SET status = ?, claimed_by = ?, attempt_count = ?, max_attempts = ?,
		claim_expires_at = ?, started_at = ? WHERE id = ?`, status, worker, attempt, maxAttempts, exp, e.ts(t0.Add(-time.Hour)), id)
}

// claimRun claims the one claimable run, which must be runID, for worker
// and returns the fence of that claim.
func (e *env) claimRun(t testing.TB, worker, runID string) store.Fence {
	t.Helper()
	got, err := e.s.ClaimRuns(context.Background(), worker, time.Minute, 1)
	if err != nil || len(got) != 1 || got[0].ID != runID {
		t.Fatalf("claim: %+v %v", got, err)
	}
	return store.Fence{Kind: store.KindRun, ID: runID, Worker: worker, Attempt: got[0].AttemptCount}
}

// claimAndStart claims the one claimable run, which must be runID, for
// worker "w" and moves its document to processing, as a worker does before
// it runs the engine.
func claimAndStart(t *testing.T, e *env, runID, docID string) store.Fence {
	t.Helper()
	f := e.claimRun(t, "w", runID)
	if err := e.s.StartDocument(context.Background(), f, docID); err != nil {
		t.Fatalf("start document: %v", err)
	}
	if d := e.docRow(t, docID); d.Status != "processing" {
		t.Fatalf("document after StartDocument: %+v", d)
	}
	return f
}

// jobRow is the queue state of one run or build.
type jobRow struct {
	Status         store.Status
	ClaimedBy      sql.NullString
	ClaimExpiresAt store.Time
	StartedAt      store.Time
	AvailableAt    store.Time
	AttemptCount   int
	MaxAttempts    int
	ErrorMessage   sql.NullString
	ExitCode       sql.NullInt64
	FinishedAt     store.Time
}

func (e *env) runRow(t testing.TB, id string) jobRow {
	t.Helper()
	return e.jobRow(t, "runs", "completed_at", id)
}

func (e *env) buildRow(t testing.TB, id string) jobRow {
	t.Helper()
	return e.jobRow(t, "builds", "finished_at", id)
}

func (e *env) jobRow(t testing.TB, table, finished, id string) jobRow {
	t.Helper()
	var rows []jobRow
	e.scan(t, &rows, `SELECT status, claimed_by, claim_expires_at, started_at, available_at, attempt_count, max_attempts,
		error_message, exit_code, `+finished+` AS finished_at FROM `+table+` WHERE id = ?`, id)
	if len(rows) != 1 {
		t.Fatalf("%s %s: %d rows", table, id, len(rows))
	}
	return rows[0]
}

// docRow is a document's state.
type docRow struct {
	Status    string
	Version   int
	LastRunAt store.Time
}

func (e *env) docRow(t testing.TB, id string) docRow {
	t.Helper()
	var rows []docRow
	e.scan(t, &rows, `SELECT status, version, last_run_at FROM documents WHERE id = ?`, id)
	if len(rows) != 1 {
		t.Fatalf("document %s: %d rows", id, len(rows))
	}
	return rows[0]
}

// docChange is one document_changes row.
type docChange struct {
	Type            string
	DocumentVersion int
	Payload         string
}

func (e *env) docChanges(t testing.TB, id string) []docChange {
	t.Helper()
	var rows []docChange
	e.scan(t, &rows, `SELECT type, document_version, CAST(payload AS TEXT) AS payload FROM document_changes
		WHERE document_id = ? ORDER BY cursor`, id)
	return rows
}

// sameTime compares a stored timestamp with the time it should hold.
func sameTime(t testing.TB, what string, got store.Time, want time.Time) {
	t.Helper()
	if !got.Valid || !got.Time.Equal(want) {
		t.Errorf("%s = %v (valid %v), want %v", what, got.Time, got.Valid, want)
	}
}

func ptr[T any](v T) *T { return &v }

// clockSlack is how far a time the database's clock wrote may be from the
// test's own reading of the same host clock (a slow machine, a rounding).
const clockSlack = 5 * time.Second

// nearNow checks that a time written from the database's clock is d after
// the moment it was written (the test reads the same host's clock).
func nearNow(t testing.TB, what string, got store.Time, d time.Duration) {
	t.Helper()
	want := time.Now().Add(d)
	if !got.Valid || got.Time.Before(want.Add(-clockSlack)) || got.Time.After(want.Add(clockSlack)) {
		t.Errorf("%s = %v (valid %v), want about now+%v = %v", what, got.Time, got.Valid, d, want)
	}
}

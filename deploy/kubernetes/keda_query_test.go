package kubernetes_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
	_ "github.com/jackc/pgx/v5/stdlib" // the driver KEDA's postgresql scaler uses
)

// TestMain drops the tablespace pgtemp made for the test's database.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtemp.DropTemplates()
	os.Exit(code)
}

// queueRows makes rows in a migrated database through the worker's own store.
type queueRows struct {
	t     *testing.T
	ctx   context.Context
	st    *store.Store
	ws    string
	cfg   string
	build string
}

func newQueueRows(t *testing.T, dbURL string) *queueRows {
	ctx := context.Background()
	st := pgtemp.Open(t, dbURL)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	q := &queueRows{t: t, ctx: ctx, st: st, ws: store.NewID(), cfg: store.NewID()}
	now := time.Now()
	if err := st.EnsureWorkspace(ctx, q.ws, now); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertConfiguration(ctx, store.NewConfiguration{ID: q.cfg, WorkspaceID: q.ws, DisplayName: "keda"}, now); err != nil {
		t.Fatal(err)
	}
	return q
}

func (q *queueRows) exec(sql string, args ...any) {
	if err := q.st.TestDB().WithContext(q.ctx).Exec(sql, args...).Error; err != nil {
		q.t.Fatalf("%s: %v", sql, err)
	}
}

func (q *queueRows) enqueueBuild() {
	id, _, err := q.st.EnqueueBuild(q.ctx, store.NewBuild{WorkspaceID: q.ws, ConfigurationID: q.cfg,
		Fingerprint: "fp", MaxAttempts: 3}, time.Now())
	if err != nil {
		q.t.Fatal(err)
	}
	q.build = id
}

// enqueueRuns queues n runs (a document each) of the build, due at availableAt.
func (q *queueRows) enqueueRuns(n int, availableAt time.Time) {
	for range n {
		doc := store.NewID()
		if err := q.st.InsertDocument(q.ctx, store.NewDocument{ID: doc, WorkspaceID: q.ws, OriginalFilename: "a.csv",
			StoredURI: "a.csv", Sha256: "0"}, time.Now()); err != nil {
			q.t.Fatal(err)
		}
		if _, err := q.st.EnqueueRun(q.ctx, store.NewRun{WorkspaceID: q.ws, ConfigurationID: q.cfg, DocumentID: doc,
			BuildID: q.build, MaxAttempts: 3, AvailableAt: availableAt}, time.Now()); err != nil {
			q.t.Fatal(err)
		}
	}
}

// claim makes n due runs running, as a supervisor's claim does.
func (q *queueRows) claim(n int) {
	_, got, err := q.st.ClaimJobs(q.ctx, "pod-a", time.Minute, 0, n)
	if err != nil || len(got) != n {
		q.t.Fatalf("claimed %d of %d runs: %v", len(got), n, err)
	}
}

// kedaRole creates the role of keda-role.sql, under a name of its own, in
// the database of dbURL, and returns the URL that logs in as it. The role is
// dropped when the test ends.
func kedaRole(t *testing.T, dbURL string) string {
	t.Helper()
	script, err := os.ReadFile("keda-role.sql")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	role := fmt.Sprintf("ade_keda_%d", time.Now().UnixNano())
	admin, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Revokes its grants (the database's too), so the role can go.
		for _, stmt := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := admin.Exec(stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
		admin.Close()
	})
	sqlText := strings.ReplaceAll(string(script), "ade_keda", role)
	sqlText = strings.ReplaceAll(sqlText, "ON DATABASE ade ", "ON DATABASE "+dbName+" ")
	var lines []string
	for _, l := range strings.Split(sqlText, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if stmt = strings.TrimSpace(stmt); stmt == "" {
			continue
		}
		if _, err := admin.Exec(stmt); err != nil {
			t.Fatalf("keda-role.sql: %s: %v", stmt, err)
		}
	}
	u.User = url.UserPassword(role, "change-me")
	return u.String()
}

// TestKEDAQueryReplicas runs scaledobject.yaml's query the way KEDA's
// postgresql scaler does (pgx, one float64), logged in as the read-only
// role of keda-role.sql, after each step of a queue's life, and checks the
// replica count that value yields with the base's targetQueryValue
// (ADE_WORKER_CONCURRENCY, 4).
func TestKEDAQueryReplicas(t *testing.T) {
	so := render(t, ".").scaledObject
	query := trigger(t, so).Metadata["query"]
	dbURL := pgtemp.ForTest(t, "ade_keda")
	q := newQueueRows(t, dbURL)
	db, err := sql.Open("pgx", kedaRole(t, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Least privilege holds: the role reads the queue, and nothing else.
	if _, err := db.ExecContext(q.ctx, `UPDATE runs SET status = 'queued' WHERE false`); err == nil {
		t.Error("the KEDA role may write runs")
	}
	if _, err := db.ExecContext(q.ctx, `SELECT count(*) FROM documents`); err == nil {
		t.Error("the KEDA role may read documents")
	}

	step := func(what string, wantValue float64, wantReplicas int) {
		t.Helper()
		var v float64
		if err := db.QueryRowContext(q.ctx, query).Scan(&v); err != nil {
			t.Fatalf("%s: the KEDA query fails: %v", what, err)
		}
		got := replicas(t, so, v)
		t.Logf("%-58s value %5.2f -> %d replicas", what, v, got)
		if v != wantValue || got != wantReplicas {
			t.Errorf("%s: value %v -> %d replicas, want %v -> %d", what, v, got, wantValue, wantReplicas)
		}
	}
	step("empty queue", 0, 0)
	q.enqueueBuild()
	step("one build queued", 1, 1)
	q.enqueueRuns(3, time.Time{})
	step("+3 runs waiting for that build (not claimable yet)", 1, 1)
	q.exec(`UPDATE builds SET status = 'ready' WHERE id = ?`, q.build)
	step("build ready: 3 runs due", 3, 1)
	q.enqueueRuns(6, time.Time{})
	q.enqueueRuns(5, time.Now().Add(time.Hour))
	step("+6 runs due, +5 backing off for an hour", 9, 3)
	q.claim(4)
	step("4 of the 9 due runs claimed (running)", 9, 3)
	q.exec(`UPDATE runs SET status = 'succeeded' WHERE status = 'queued' AND available_at <= now()`)
	step("the 5 queued due runs done, 4 still running", 4, 1)
	q.exec(`UPDATE runs SET status = 'succeeded' WHERE id IN (SELECT id FROM runs WHERE status = 'running' LIMIT 3)`)
	step("one run still running, nothing due: never zero", 1, 1)
	q.exec(`UPDATE runs SET status = 'succeeded' WHERE status = 'running'`)
	step("nothing running, only runs backing off", 0, 0)
	q.exec(`UPDATE runs SET available_at = now() WHERE status = 'queued'`)
	q.enqueueRuns(60, time.Time{})
	step("65 runs due: capped at maxReplicaCount", 65, 10)
}

// TestKEDAQueryIsTheClaimRule: the query is the store's one definition of
// claimable demand (store.DemandSQL, no cap), word for word,
// so the scaler never counts what the claim would not take (paused work,
// runs of builds not ready, back-off, attempts used up).
func TestKEDAQueryIsTheClaimRule(t *testing.T) {
	eachRender(t, func(t *testing.T, m *manifests) {
		query := trigger(t, m.scaledObject).Metadata["query"]
		if got, want := strings.Join(strings.Fields(query), " "), strings.Join(strings.Fields(store.DemandSQL(0)), " "); got != want {
			t.Errorf("scaledobject.yaml's query differs from store.DemandSQL(0):\n got %s\nwant %s", got, want)
		}
	})
}

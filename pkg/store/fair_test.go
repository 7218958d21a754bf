package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

func pgtempOpen(t testing.TB, url string) *store.Store { return pgtemp.Open(t, url) }

// queueWorld places runs and builds of named workspaces ("A", "B", ...) in
// one database, each workspace with its own configuration and ready build.
type queueWorld struct {
	e     *env
	ws    map[string]string // name -> workspace id
	cfg   map[string]string // name -> configuration id
	build map[string]string // name -> ready build id
	name  map[string]string // workspace id -> name
	seq   int               // orders the rows' created_at
}

func newQueueWorld(e *env) *queueWorld {
	return &queueWorld{e: e, ws: map[string]string{}, cfg: map[string]string{}, build: map[string]string{}, name: map[string]string{}}
}

// workspace makes the named workspace once: a configuration and a ready build.
func (w *queueWorld) workspace(t testing.TB, name string) {
	t.Helper()
	if _, ok := w.ws[name]; ok {
		return
	}
	ctx := context.Background()
	ws, cfg := store.NewID(), store.NewID()
	if err := w.e.s.InsertConfiguration(ctx, store.NewConfiguration{ID: cfg, WorkspaceID: ws, DisplayName: name}, t0); err != nil {
		t.Fatal(err)
	}
	b, _, err := w.e.s.EnqueueBuild(ctx, store.NewBuild{WorkspaceID: ws, ConfigurationID: cfg, Fingerprint: store.NewID(), MaxAttempts: 3}, t0)
	if err != nil {
		t.Fatal(err)
	}
	w.e.exec(t, `UPDATE builds SET status = 'ready' WHERE id = ?`, b)
	w.ws[name], w.cfg[name], w.build[name], w.name[ws] = ws, cfg, b, name
}

// run queues a run of the named workspace, created (and due) after every
// row made before it.
func (w *queueWorld) run(t testing.TB, name string) string {
	t.Helper()
	w.workspace(t, name)
	w.seq++
	at := t0.Add(time.Duration(w.seq) * time.Second)
	id, err := w.e.s.EnqueueRun(context.Background(), store.NewRun{WorkspaceID: w.ws[name], ConfigurationID: w.cfg[name],
		DocumentID: store.NewID(), BuildID: w.build[name], MaxAttempts: 3, AvailableAt: at}, at)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// running makes n runs of the named workspace running (held by another worker).
func (w *queueWorld) running(t testing.TB, name string, n int) {
	t.Helper()
	for range n {
		w.e.hold(t, store.KindRun, w.run(t, name), "elsewhere", 1, 3, ptr(time.Now().Add(time.Hour)))
	}
}

// names maps claimed runs to their workspaces' names.
func (w *queueWorld) names(runs []store.ClaimedRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = w.name[r.WorkspaceID]
	}
	return out
}

// TestClaimOrder is the claim sequence for given queued and running sets:
// fair order (fewest running across the fleet first, ties by the oldest
// claimable run, oldest first within a workspace), fifo, and the cap.
func TestClaimOrder(t *testing.T) {
	t.Parallel()
	fair, fifo := store.ClaimPolicy{}, store.ClaimPolicy{FIFO: true}
	tests := []struct {
		name    string
		policy  store.ClaimPolicy
		running map[string]int
		queued  string // one letter per queued run, oldest first
		batch   int    // runs per claim
		want    string // the workspaces of the runs claimed, claim by claim, "|" between claims
	}{
		{"a flood does not stall another workspace", fair, nil, "AAAAAB", 1, "A|B|A|A|A|A|"},
		{"fifo keeps today's order", fifo, nil, "AAAAAB", 1, "A|A|A|A|A|B|"},
		{"one claim of several alternates", fair, nil, "AAAAAB", 3, "ABA|AAA|"},
		{"fewest running across the fleet first", fair, map[string]int{"A": 1, "B": 3}, "BACA", 1, "C|A|A|B|"},
		{"ties go to the oldest claimable run", fair, nil, "BAAC", 1, "B|A|C|A|"},
		{"a busy workspace waits for idle ones", fair, map[string]int{"A": 2}, "AAB", 4, "BAA|"},
		{"the cap holds runs back", store.ClaimPolicy{WorkspaceMaxRunning: 2}, map[string]int{"A": 1}, "AAAAB", 4, "BA|"},
		{"the cap in fifo order", store.ClaimPolicy{FIFO: true, WorkspaceMaxRunning: 1}, nil, "AABA", 1, "A|B|"},
		{"a workspace at its cap takes nothing", store.ClaimPolicy{WorkspaceMaxRunning: 2}, map[string]int{"A": 2}, "AA", 2, ""},
		// A claim of 3 reads the 10 oldest runs of idle workspaces: all
		// of A here, so it takes A's first, then looks past A for B.
		{"a flood longer than a claim's window", fair, nil, "AAAAAAAAAAAAB", 3, "ABA|AAA|AAA|AAA|A|"},
		{"a claim of several by running count, then age", fair, map[string]int{"A": 1, "B": 2}, "BBAAC", 3, "CAB|AB|"},
		{"the cap in one claim of several workspaces", store.ClaimPolicy{WorkspaceMaxRunning: 2}, nil, "AAABBBC", 7, "ABCAB|"},
		{"the cap in fifo order, several per claim", store.ClaimPolicy{FIFO: true, WorkspaceMaxRunning: 2}, nil, "AAABBB", 3, "AAB|B|"},
		{"the cap in fifo order past a flood", store.ClaimPolicy{FIFO: true, WorkspaceMaxRunning: 1}, nil, "AAAAAAAAAAAAB", 2, "AB|"},
		// The README's example ("Fair share, caps and pauses").
		{"the README's example", fair, map[string]int{"A": 2, "C": 1}, "AABBC", 4, "BBCA|A|"},
		{"the README's example in fifo order", fifo, map[string]int{"A": 2, "C": 1}, "AABBC", 4, "AABB|C|"},
		{"the README's example with a cap of 2", store.ClaimPolicy{WorkspaceMaxRunning: 2}, map[string]int{"A": 2, "C": 1}, "AABBC", 4, "BBC|"},
	}
	// Claimed as runs alone, and as builds and runs with no build queued
	// (on PostgreSQL: both queues' candidates in one read).
	claims := map[string]func(s *store.Store, batch int) ([]store.ClaimedRun, error){
		"runs": func(s *store.Store, batch int) ([]store.ClaimedRun, error) {
			return s.ClaimRuns(context.Background(), "w1", time.Minute, batch)
		},
		"jobs": func(s *store.Store, batch int) ([]store.ClaimedRun, error) {
			_, runs, err := s.ClaimJobs(context.Background(), "w1", time.Minute, batch, batch)
			return runs, err
		},
	}
	for _, tt := range tests {
		for via, claim := range claims {
			t.Run(tt.name+"/"+via, func(t *testing.T) {
				t.Parallel()
				eachEnv(t, func(t *testing.T, e *env) {
					w := newQueueWorld(e)
					for name, n := range tt.running {
						w.running(t, name, n)
					}
					for _, c := range tt.queued {
						w.run(t, string(c))
					}
					e.s.SetClaimPolicy(tt.policy)
					var got strings.Builder
					for range len(tt.queued) + 1 {
						runs, err := claim(e.s, tt.batch)
						if err != nil {
							t.Fatal(err)
						}
						if len(runs) == 0 {
							break
						}
						got.WriteString(strings.Join(w.names(runs), "") + "|")
					}
					if got.String() != tt.want {
						t.Errorf("claimed %q, want %q", got.String(), tt.want)
					}
				})
			})
		}
	}
}

// TestClaimOrderBuilds: builds follow the same rule, by builds building.
func TestClaimOrderBuilds(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		name := map[string]string{}
		mk := func(n string, ws string, at time.Time) string {
			id, _, err := e.s.EnqueueBuild(ctx, store.NewBuild{WorkspaceID: ws, ConfigurationID: store.NewID(),
				Fingerprint: store.NewID(), MaxAttempts: 3}, at)
			if err != nil {
				t.Fatal(err)
			}
			name[ws] = n
			return id
		}
		a, b := store.NewID(), store.NewID()
		e.hold(t, store.KindBuild, mk("A", a, t0), "elsewhere", 1, 3, ptr(time.Now().Add(time.Hour)))
		mk("A", a, t0.Add(time.Second))
		mk("A", a, t0.Add(2*time.Second))
		mk("B", b, t0.Add(3*time.Second))
		var got []string
		for range 3 {
			builds, err := e.s.ClaimBuilds(ctx, "w1", time.Minute, 1)
			if err != nil || len(builds) != 1 {
				t.Fatalf("claim: %v %v", builds, err)
			}
			got = append(got, name[builds[0].WorkspaceID])
		}
		if strings.Join(got, "") != "BAA" {
			t.Errorf("builds claimed in workspaces %v, want B A A", got)
		}
	})
}

// TestWorkspaceCapUnderConcurrentClaims: 3 supervisors (each its own
// connection pool) of 4 slots claim 200 runs of 4 workspaces with a cap of
// 2; a sampler reads the running count per workspace from the database
// throughout, and it never passes the cap. Workspace A's runs are held
// until the sampler has seen A at its cap, so the load on the cap does not
// depend on claims being faster than a run's work (on a busy machine they
// were not, and A never had two running).
func TestWorkspaceCapUnderConcurrentClaims(t *testing.T) {
	t.Parallel()
	const (
		supervisors, slots, limit = 3, 4, 2
	)
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		w := newQueueWorld(e)
		for name, n := range map[string]int{"A": 100, "B": 20, "C": 12, "D": 8} {
			for range n {
				w.run(t, name)
			}
		}
		var (
			wg       sync.WaitGroup
			errs     = make(chan error, supervisors*slots)
			aAtCap   = make(chan struct{})
			holdUpTo = time.Now().Add(30 * time.Second)
		)
		hold := func(workspaceID string) error {
			if workspaceID != w.ws["A"] {
				return nil
			}
			select {
			case <-aAtCap:
				return nil
			case <-time.After(time.Until(holdUpTo)):
				return fmt.Errorf("workspace A's runs were held 30 s and the sampler never saw %d of them running", limit)
			}
		}
		for i := range supervisors {
			st := pgtempOpen(t, e.url)
			st.SetClaimPolicy(store.ClaimPolicy{WorkspaceMaxRunning: limit})
			for j := range slots {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- workSlot(ctx, st, fmt.Sprintf("sup%d-slot%d", i, j), hold)
				}()
			}
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		peak, samples := map[string]int{}, 0
		for sampling := true; sampling; {
			select {
			case <-done:
				sampling = false
			default:
			}
			var rows []struct {
				WorkspaceID string
				N           int
			}
			e.scan(t, &rows, `SELECT workspace_id, COUNT(*) AS n FROM runs WHERE status = 'running' GROUP BY workspace_id`)
			samples++
			for _, r := range rows {
				peak[w.name[r.WorkspaceID]] = max(peak[w.name[r.WorkspaceID]], r.N)
			}
			if peak["A"] >= limit && !closed(aAtCap) {
				close(aAtCap)
			}
			// A sample per run's work (1-3 ms), not as fast as it can: a
			// sampler without pause took half the package's CPU from the
			// claims it watches.
			time.Sleep(time.Millisecond)
		}
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var succeeded int
		e.scan(t, &succeeded, `SELECT COUNT(*) FROM runs WHERE status = 'succeeded'`)
		t.Logf("%d samples; peak running per workspace %v", samples, peak)
		if succeeded != 140 {
			t.Errorf("%d runs succeeded, want 140", succeeded)
		}
		for name, n := range peak {
			if n > limit {
				t.Errorf("workspace %s had %d runs running at once, cap %d", name, n, limit)
			}
		}
		if peak["A"] < limit {
			t.Errorf("workspace A peaked at %d running, want the cap %d: the test did not load the claims", peak["A"], limit)
		}
	})
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// workSlot is one slot of a supervisor: claim a run, hold it until hold
// returns, work it a moment, mark it succeeded, until nothing is claimable
// and nothing runs.
func workSlot(ctx context.Context, st *store.Store, worker string, hold func(workspaceID string) error) error {
	for {
		runs, err := st.ClaimRuns(ctx, worker, time.Minute, 1)
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			pending, err := st.PendingJobs(ctx)
			if err != nil || pending == 0 {
				return err
			}
			var queued int64
			if err := st.TestDB().Raw(`SELECT COUNT(*) FROM runs WHERE status = 'queued'`).Scan(&queued).Error; err != nil || queued == 0 {
				return err
			}
			time.Sleep(3 * time.Millisecond) // the capped runs wait for a slot of their workspace
			continue
		}
		if err := hold(runs[0].WorkspaceID); err != nil {
			return err
		}
		time.Sleep(time.Duration(1+len(runs[0].ID)%3) * time.Millisecond)
		if err := st.TestDB().Exec(`UPDATE runs SET status = 'succeeded' WHERE id = ?`, runs[0].ID).Error; err != nil {
			return err
		}
	}
}

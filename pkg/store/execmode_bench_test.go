package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// BenchmarkExecMode is one run's database work (as BenchmarkRunLifecycle)
// on a direct PostgreSQL connection under pgx's exec mode, the store's
// default (no named prepared statements, so pgbouncer's transaction mode
// works), and under pgx's own default, cache_statement. The two alternate
// run by run on two handles of one database, so a machine busy with other
// work slows both alike; each reports its mean as exec-ms/run and
// cache_statement-ms/run:
//
//	go test ./pkg/store -run '^$' -bench ExecMode -benchtime 2000x
func BenchmarkExecMode(b *testing.B) {
	e := newOwnEnv(b, "postgres")
	modes := []string{"exec", "cache_statement"}
	stores := map[string]*store.Store{}
	for _, mode := range modes {
		stores[mode] = pgtemp.Open(b, e.url+"&default_query_exec_mode="+mode)
	}
	ctx := context.Background()
	build := e.build(b, "ready")
	for i := 0; i < 2*b.N; i++ {
		e.runFor(b, e.doc(b), build, t0, t0)
	}
	sum := testSummary("bench")
	code := 0
	spent := map[string]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, mode := range modes {
			s, start := stores[mode], time.Now()
			_, runs, err := s.ClaimJobs(ctx, "w", time.Minute, 1, 1)
			if err != nil || len(runs) != 1 {
				b.Fatalf("%s: claim: %v %v", mode, runs, err)
			}
			r := runs[0]
			if _, err := s.LoadRunContext(ctx, &r); err != nil {
				b.Fatal(err)
			}
			f := store.Fence{Kind: store.KindRun, ID: r.ID, Worker: "w", Attempt: r.AttemptCount}
			if err := s.StartDocument(ctx, f, r.InputDocumentID); err != nil {
				b.Fatal(err)
			}
			if err := s.FinishRun(ctx, f, store.RunOutcome{Succeeded: true, ExitCode: &code,
				OutputPath: "output/normalized.xlsx", Summary: sum, DocumentID: r.InputDocumentID}); err != nil {
				b.Fatal(err)
			}
			spent[mode] += time.Since(start)
		}
	}
	b.StopTimer()
	for _, mode := range modes {
		b.ReportMetric(float64(spent[mode].Microseconds())/1000/float64(b.N), mode+"-ms/run")
	}
	var left int64
	e.scan(b, &left, `SELECT count(*) FROM runs WHERE status <> 'succeeded'`)
	if left != 0 {
		b.Fatalf("%d runs not succeeded", left)
	}
}

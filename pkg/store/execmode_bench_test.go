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
// works), and under pgx's own default, cache_statement:
//
//	go test ./pkg/store -run '^$' -bench ExecMode -benchtime 2000x -count 3
func BenchmarkExecMode(b *testing.B) {
	for _, mode := range []string{"exec", "cache_statement"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnv(b, "postgres")
			e.s = pgtemp.Open(b, e.url+"&default_query_exec_mode="+mode)
			ctx := context.Background()
			build := e.build(b, "ready")
			for i := 0; i < b.N; i++ {
				e.runFor(b, e.doc(b), build, t0, t0)
			}
			sum := testSummary("bench")
			code := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, runs, err := e.s.ClaimJobs(ctx, "w", time.Minute, 1, 1)
				if err != nil || len(runs) != 1 {
					b.Fatalf("claim: %v %v", runs, err)
				}
				r := runs[0]
				if _, err := e.s.LoadRunContext(ctx, &r); err != nil {
					b.Fatal(err)
				}
				f := store.Fence{Kind: store.KindRun, ID: r.ID, Worker: "w", Attempt: r.AttemptCount}
				if err := e.s.StartDocument(ctx, f, r.InputDocumentID); err != nil {
					b.Fatal(err)
				}
				if err := e.s.FinishRun(ctx, f, store.RunOutcome{Succeeded: true, ExitCode: &code,
					OutputPath: "output/normalized.xlsx", Summary: sum, DocumentID: r.InputDocumentID}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			var left int64
			e.scan(b, &left, `SELECT count(*) FROM runs WHERE status <> 'succeeded'`)
			if left != 0 {
				b.Fatalf("%d runs not succeeded", left)
			}
		})
	}
}

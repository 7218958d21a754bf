package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

// BenchmarkRunLifecycle is the database work the supervisor does for one
// run, in order: claim (builds first; none is queued), read the run's rows,
// mark its document processing and write its outcome with a summary. Its
// CPU profile is the supervisor's SQL path without the processes:
//
//	go test ./pkg/store -run '^$' -bench RunLifecycle -cpuprofile cpu.out
func BenchmarkRunLifecycle(b *testing.B) {
	for _, backend := range pgtemp.Backends {
		b.Run(backend, func(b *testing.B) {
			e := newOwnEnv(b, backend)
			ctx := context.Background()
			build := e.build(b, "ready")
			docs := make([]string, b.N)
			for i := range docs {
				docs[i] = e.doc(b)
				e.runFor(b, docs[i], build, t0, t0)
			}
			sum := testSummary("bench")
			code := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				builds, runs, err := e.s.ClaimJobs(ctx, "w", time.Minute, 1, 1)
				if err != nil || len(builds) != 0 || len(runs) != 1 {
					b.Fatalf("claim: %v %v %v", builds, runs, err)
				}
				r := runs[0]
				if _, err := e.s.LoadRunContext(ctx, &r); err != nil {
					b.Fatal(err)
				}
				f := store.Fence{Kind: store.KindRun, ID: r.ID, Worker: "w", Attempt: r.AttemptCount}
				if err := e.s.StartDocument(ctx, f, r.InputDocumentID); err != nil {
					b.Fatal(err)
				}
				o := store.RunOutcome{Succeeded: true, ExitCode: &code, OutputPath: "output/normalized.xlsx",
					Summary: sum, DocumentID: r.InputDocumentID}
				if err := e.s.FinishRun(ctx, f, o); err != nil {
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

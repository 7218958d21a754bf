package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/pgtemp"
	"github.com/ade-org/ade-worker/test/procmem"
)

// BenchmarkRunLifecycle is the database work the supervisor does for one
// run, in order: claim (builds first; none is queued), read the run's rows,
// mark its document processing and write its outcome with a summary. Its
// CPU profile is the supervisor's SQL path without the processes:
//
//	go test ./pkg/store -run '^$' -bench RunLifecycle -cpuprofile cpu.out
//
// On a PostgreSQL server of this host it also reports the server's CPU per
// run (server-ms/op: the postmaster and all its processes, background
// writers included).
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
			server := serverCPU(b, e)
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
			if used, ok := server(); ok {
				b.ReportMetric(float64(used.Microseconds())/1000/float64(b.N), "server-ms/op")
			}
			var left int64
			e.scan(b, &left, `SELECT count(*) FROM runs WHERE status <> 'succeeded'`)
			if left != 0 {
				b.Fatalf("%d runs not succeeded", left)
			}
		})
	}
}

// serverCPU starts counting the CPU of e's PostgreSQL server; the function
// it returns is what the server has used since, when the server runs on
// this host (ok false otherwise, and for SQLite): the postmaster's own and
// its exited children's time, and its live children's (schedstat, in
// nanoseconds: a statement costs less than a tick).
func serverCPU(b *testing.B, e *env) func() (time.Duration, bool) {
	none := func() (time.Duration, bool) { return 0, false }
	if e.backend != "postgres" {
		return none
	}
	var backend []int
	e.scan(b, &backend, `SELECT pg_backend_pid()`)
	postmaster, err := procmem.Parent(backend[0])
	if err != nil {
		b.Logf("no server CPU figure: %v", err)
		return none
	}
	tick := time.Second / time.Duration(procmem.ClockTicks())
	total := func() (time.Duration, bool) {
		t, err := procmem.CPU(postmaster)
		if err != nil {
			return 0, false
		}
		sum := time.Duration(t.Children()) * tick // the exited children
		for _, pid := range append(procs.Descendants(postmaster), postmaster) {
			if ns, err := procmem.Schedstat(pid); err == nil {
				sum += time.Duration(ns)
			}
		}
		return sum, true
	}
	start, ok := total()
	if !ok {
		return none
	}
	return func() (time.Duration, bool) {
		end, ok := total()
		return end - start, ok
	}
}

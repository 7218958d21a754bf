package procs_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// BenchmarkShim measures what the sandbox adds to starting a job's process:
// /bin/true through the exec-with-limits shim, alternately without and with
// a run's policy (the system folders plus a venv, package, input and
// output), so both see the same machine load. The metrics are the
// children's user+system CPU per start, from getrusage; sandbox-ms/op is
// the difference, the confinement's cost per job step.
//
//	go test ./pkg/procs -run '^$' -bench Shim -benchtime 300x
func BenchmarkShim(b *testing.B) {
	dir := b.TempDir()
	run := &sandbox.Policy{Mode: sandbox.Required,
		Read:  append(append([]string{}, sandbox.SystemRead...), dir+"/venv", dir+"/config", dir+"/input/doc.csv"),
		Write: append(append([]string{}, sandbox.SystemWrite...), dir+"/output", dir+"/logs", dir+"/tmp")}
	exe := shimPath(b)
	var spent [2]time.Duration
	for i := 0; i < b.N; i++ {
		for k, policy := range []*sandbox.Policy{nil, run} {
			before := childrenCPU()
			c := procs.Command{Path: "/bin/true", LimitShim: exe, Sandbox: policy,
				Rlimits: []procs.Rlimit{{Resource: syscall.RLIMIT_NOFILE, Max: 1024}}}
			if exit, err := procs.Run(context.Background(), c); err != nil || exit.Code != 0 {
				b.Fatalf("%+v %v", exit, err)
			}
			spent[k] += childrenCPU() - before
		}
	}
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(perOp(spent[0]), "unconfined-ms/op")
	b.ReportMetric(perOp(spent[1]), "sandboxed-ms/op")
	b.ReportMetric(perOp(spent[1]-spent[0]), "sandbox-ms/op")
}

func childrenCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

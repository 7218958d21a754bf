package jobrunner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// ServeArg, as the jobrunner's only argument, makes it serve job after job
// (Serve) instead of one. The supervisor starts its jobrunners so: a Go
// process start and exit cost a run several milliseconds of CPU, more than
// everything else the jobrunner does for it.
const ServeArg = "__serve"

// Serve runs the jobs whose specs arrive on in, one line of JSON each, one
// at a time, and writes each job's result as one line of JSON on out
// before it reads the next spec. Renewal lines for the jobs' leases arrive
// on renewals, tagged with each job's Lease.Tag. It returns nil when in
// ends, and once a job has ended when ctx ends (SIGTERM: the job in hand
// is stopped and reported cancelled, and no other is started). onFailed
// hears the error of every job that did not succeed, for the log.
//
// Jobs share nothing but this process: each has its own events file,
// scratch folder and context, and every process a job started is killed
// when its step ends (procs.Command.KillDescendants, with this process a
// subreaper), so none is left to see the next job.
func Serve(ctx context.Context, in io.Reader, out io.Writer, renewals io.Reader, onFailed func(msg string)) error {
	var fence atomic.Pointer[func(string)]
	if renewals != nil {
		go ReadRenewals(renewals, func(line string) {
			if take := fence.Load(); take != nil {
				(*take)(line)
			}
		})
	}
	type next struct {
		line []byte
		err  error
	}
	specs := make(chan next)
	go func() {
		r := bufio.NewReaderSize(in, 64<<10)
		for {
			line, err := jobspec.ReadLine(r, jobspec.MaxSpecBytes)
			specs <- next{line, err}
			if err != nil && !errors.Is(err, jobspec.ErrLineTooLong) {
				return
			}
		}
	}()
	for {
		var n next
		select {
		case <-ctx.Done():
			return nil
		case n = <-specs:
		}
		if ctx.Err() != nil {
			return nil // a spec came as the SIGTERM did: start no job after it
		}
		if errors.Is(n.err, io.EOF) && len(n.line) == 0 {
			return nil
		}
		var res *jobspec.Result
		switch {
		case errors.Is(n.err, jobspec.ErrLineTooLong):
			res = BadSpec(fmt.Sprintf("job spec is larger than %d bytes", jobspec.MaxSpecBytes))
		case n.err != nil && !errors.Is(n.err, io.EOF):
			return fmt.Errorf("read the next job spec: %w", n.err)
		default:
			res = serveOne(ctx, n.line, &fence)
		}
		if res.Status != jobspec.StatusSucceeded && onFailed != nil {
			onFailed(res.Error)
		}
		data, _ := json.Marshal(res)
		if _, err := out.Write(append(data, '\n')); err != nil {
			return fmt.Errorf("write a job's result: %w", err)
		}
		if errors.Is(n.err, io.EOF) { // the last spec came without a newline
			return nil
		}
	}
}

// serveOne decodes and runs one job spec.
func serveOne(ctx context.Context, line []byte, fence *atomic.Pointer[func(string)]) *jobspec.Result {
	spec, err := jobspec.Decode(bytes.NewReader(line))
	if err != nil {
		return BadSpec(err.Error())
	}
	return ExecuteFenced(ctx, spec, func(take func(string)) func() {
		fence.Store(&take)
		return func() { fence.Store(nil) }
	})
}

// ExecuteFenced runs spec (Execute), fenced by its lease when it has one:
// attach is handed the fence's take, for the job's renewal lines, and
// returns what stops them reaching it. The result of a job the fence
// stopped says so (LeaseLapsed).
func ExecuteFenced(ctx context.Context, spec *jobspec.Spec, attach func(take func(line string)) (detach func())) *jobspec.Result {
	if l := spec.Lease; l != nil {
		var take func(string)
		var unfence context.CancelFunc
		ctx, take, unfence = Fence(ctx, l)
		defer unfence()
		defer attach(take)()
	}
	res := Execute(ctx, spec)
	if errors.Is(context.Cause(ctx), ErrLeaseLapsed) {
		res = LeaseLapsed(res)
	}
	return res
}

// BadSpec is the result of a spec that could not be read.
func BadSpec(msg string) *jobspec.Result {
	return &jobspec.Result{Status: jobspec.StatusFailed, Reason: jobspec.ReasonBadSpec,
		ExitCode: jobspec.CodeGenericFailure, Error: msg}
}

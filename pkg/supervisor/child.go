package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/store"
)

// childOutcome is how a jobrunner process ended, as the supervisor saw it.
type childOutcome struct {
	result *jobspec.Result // nil when the child printed no usable result
	exit   procs.Exit
	// why the child has no result, for the job's error message.
	problem string
	// leaseLost: someone else holds the job now; write nothing.
	leaseLost bool
	// stopped: the supervisor is shutting down; hand the claim back.
	stopped bool
}

// maxResultBytes bounds the jobrunner's stdout; the engine summary of a huge
// workbook is a few megabytes.
const maxResultBytes = 64 << 20

// backstop is added to a job's own timeout before the supervisor kills a
// jobrunner that did not stop its engine by itself.
const backstop = 30 * time.Second

// runChild runs the jobrunner for spec, heartbeating f's lease while it runs.
func (s *Supervisor) runChild(ctx context.Context, log zerolog.Logger, f store.Fence, spec *jobspec.Spec, lease time.Duration) childOutcome {
	var stdin bytes.Buffer
	if err := spec.Encode(&stdin); err != nil {
		return childOutcome{problem: fmt.Sprintf("encode job spec: %v", err)}
	}
	childCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if spec.TimeoutSeconds > 0 {
		var stop context.CancelFunc
		childCtx, stop = context.WithTimeout(childCtx, time.Duration(spec.TimeoutSeconds*float64(time.Second))+backstop)
		defer stop()
	}
	var lost atomic.Bool
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		s.heartbeat(childCtx, log, f, lease, func() { lost.Store(true); cancel() })
	}()

	var stdout bytes.Buffer
	exit, err := procs.Run(childCtx, procs.Command{
		Path: s.jobrunner, Env: spec.Env, Stdin: &stdin, KillGrace: 5 * time.Second,
		Stdout: func(r io.Reader) {
			_, _ = io.Copy(&stdout, io.LimitReader(r, maxResultBytes))
			_, _ = io.Copy(io.Discard, r)
		},
		Stderr: func(r io.Reader) { forwardLines(r, log) },
	})
	cancel()
	<-hbDone

	out := childOutcome{exit: exit, leaseLost: lost.Load(), stopped: ctx.Err() != nil && !lost.Load()}
	switch {
	case err != nil:
		out.problem = fmt.Sprintf("cannot start jobrunner: %v", err)
	case errors.Is(childCtx.Err(), context.DeadlineExceeded) && !out.leaseLost && !out.stopped:
		out.problem = fmt.Sprintf("jobrunner did not stop within %s of the job's timeout and was killed", backstop)
	default:
		res, decodeErr := jobspec.DecodeResult(bytes.TrimSpace(stdout.Bytes()))
		if decodeErr != nil {
			out.problem = fmt.Sprintf("jobrunner %s without a result", exit)
		} else {
			out.result = res
		}
	}
	return out
}

// heartbeat extends the lease until ctx ends; lost is called once when the
// lease turns out to be someone else's.
func (s *Supervisor) heartbeat(ctx context.Context, log zerolog.Logger, f store.Fence, lease time.Duration, lost func()) {
	t := time.NewTicker(heartbeatInterval(lease))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.store.Heartbeat(ctx, f, time.Now().Add(lease))
		switch {
		case err == nil:
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn().Msg("lease lost: another worker holds this job now; stopping it and writing nothing")
			lost()
			return
		case ctx.Err() == nil:
			log.Warn().Err(err).Msg("heartbeat failed; will retry")
		}
	}
}

// heartbeatInterval renews a lease three times per lease period, at most
// every 30 seconds, so one missed beat never costs the lease.
func heartbeatInterval(lease time.Duration) time.Duration {
	return max(min(lease/3, 30*time.Second), 100*time.Millisecond)
}

// forwardLines logs the jobrunner's own diagnostics.
func forwardLines(r io.Reader, log zerolog.Logger) {
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Warn().Str("stream", "jobrunner.stderr").Msg(string(bytes.TrimRight(line, "\r\n")))
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

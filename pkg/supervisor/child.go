package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
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
func (s *Supervisor) runChild(ctx context.Context, log zerolog.Logger, l *lease, spec *jobspec.Spec) childOutcome {
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
		s.heartbeat(childCtx, log, l, func() { lost.Store(true); cancel() })
	}()

	var stdout bytes.Buffer
	exit, err := procs.Run(childCtx, procs.Command{
		Path: s.jobrunner, Env: spec.Env, Stdin: &stdin, KillGrace: 5 * time.Second,
		// SIGTERM, not SIGKILL, if this supervisor dies: the jobrunner then
		// kills its engine and everything the engine started.
		DeathSignal: syscall.SIGTERM,
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
func (s *Supervisor) heartbeat(ctx context.Context, log zerolog.Logger, l *lease, lost func()) {
	t := time.NewTicker(heartbeatInterval(l.length))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		err := s.store.Heartbeat(ctx, l.fence, now.Add(l.length))
		switch {
		case err == nil:
			l.renewed(now)
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn().Msg("lease lost: another worker holds this job now; stopping it and writing nothing")
			lost()
			return
		case ctx.Err() == nil:
			s.obs.DBError("heartbeat")
			log.Warn().Err(err).Msg("heartbeat failed; will retry")
		}
	}
}

// lease tracks until when this worker holds a claimed job.
type lease struct {
	fence  store.Fence
	length time.Duration
	until  atomic.Int64 // unix nanoseconds
	// outcome is how this worker's part ended (see ended); only the job's
	// own goroutine touches it.
	outcome string
}

func newLease(f store.Fence, length time.Duration, claimedAt time.Time) *lease {
	l := &lease{fence: f, length: length}
	l.renewed(claimedAt)
	return l
}

// renewed records a lease renewal made at t.
func (l *lease) renewed(t time.Time) { l.until.Store(t.Add(l.length).UnixNano()) }

// end is when the lease runs out unless renewed.
func (l *lease) end() time.Time { return time.Unix(0, l.until.Load()) }

// persist retries a fenced write with backoff until it lands, the fence
// says another worker holds the job, or the lease runs out (from then on
// cleanup re-queues the job, so the attempt is retried, not lost). A
// database outage thus delays an outcome instead of dropping it.
func (s *Supervisor) persist(log zerolog.Logger, l *lease, what string, write func() error) error {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := write()
		if err != nil && !errors.Is(err, store.ErrLeaseLost) {
			s.obs.DBError("write")
		}
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info().Str("write", what).Int("tries", attempt).Msg("database write landed after retries")
			}
			return nil
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn().Str("write", what).Msg("lease lost before the write landed; the job's new owner decides")
			return err
		case time.Now().Add(delay).After(l.end()):
			log.Error().Err(err).Str("write", what).Msg("database write failed until the lease ran out; the job will be retried after lease expiry")
			return err
		case attempt == 1:
			log.Warn().Err(err).Str("write", what).Msg("database write failed; retrying until it lands or the lease runs out")
		}
		time.Sleep(delay)
		delay = min(delay*2, 5*time.Second)
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

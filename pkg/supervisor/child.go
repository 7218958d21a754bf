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
	"github.com/ade-org/ade-worker/pkg/tick"
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
	// cancelled: the job's row was cancelled and the child stopped for it.
	cancelled bool
}

// maxResultBytes bounds the jobrunner's stdout; the engine summary of a huge
// workbook is a few megabytes.
const maxResultBytes = 64 << 20

// backstop is added to a job's own timeout before the supervisor kills a
// jobrunner that did not stop its engine by itself.
const backstop = 30 * time.Second

// runChild runs spec on a jobrunner while the heartbeat keeps l's lease
// alive, and tells the jobrunner of each renewal (see jobspec.Lease).
func (s *Supervisor) runChild(ctx context.Context, log zerolog.Logger, l *lease, spec *jobspec.Spec) childOutcome {
	if l.cancelRequested() {
		return childOutcome{cancelled: true, problem: "cancelled before the jobrunner started"}
	}
	r, tag, err := s.handOver(log, l, spec)
	if err != nil {
		return childOutcome{problem: err.Error()}
	}
	childCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if spec.TimeoutSeconds > 0 {
		var stop context.CancelFunc
		childCtx, stop = context.WithTimeout(childCtx, time.Duration(spec.TimeoutSeconds*float64(time.Second))+backstop)
		defer stop()
	}
	killer := &treeKiller{}
	killer.started(r.proc.Pid())
	defer l.watchCancel(func() {
		cancel()                                 // SIGTERM now ...
		time.AfterFunc(cancelGrace, killer.kill) // ... SIGKILL soon
	})()
	var lost atomic.Bool
	detach := l.attach(func(left time.Duration) { r.tellRenewal(tag, left) }, func() { lost.Store(true); cancel() })

	var (
		line    []byte
		printed bool
		exit    procs.Exit
	)
	select {
	case line, printed = <-r.results:
	case <-childCtx.Done():
	}
	inOrder := printed && childCtx.Err() == nil
	if !inOrder {
		// Stopped or crashed: this jobrunner serves no more.
		exit, err = r.end(childCtx)
		if !printed {
			line, printed = <-r.results // what it printed on its way out, if anything
		}
	}
	killer.exited()
	detach()
	cancel()
	if inOrder {
		s.runners.give(r)
	}
	return s.childResult(ctx, childCtx, exit, err, printed, lost.Load(), l.cancelRequested(), line)
}

// handOver gives spec, with its lease, to an idle jobrunner or a new one
// and returns it and the tag of the job's renewal lines. A jobrunner that
// died while idle shows only when the spec cannot be written to it: the
// job, not yet started, then goes to a fresh one.
func (s *Supervisor) handOver(log zerolog.Logger, l *lease, spec *jobspec.Spec) (*jobrunnerProc, string, error) {
	var lastErr error
	for try := 0; try < 2; try++ {
		r, err := s.runners.take(spec.Env, log)
		if err != nil {
			return nil, "", fmt.Errorf("cannot start jobrunner: %w", err)
		}
		tag := r.nextTag()
		spec.Lease = &jobspec.Lease{RemainingSeconds: l.remaining().Seconds(), MarginSeconds: fenceMargin(l.length).Seconds(),
			RenewalFD: 3, Tag: tag}
		if lastErr = r.send(spec); lastErr == nil {
			return r, tag, nil
		}
		s.runners.discard(r)
	}
	return nil, "", fmt.Errorf("jobrunner failed: %w", lastErr)
}

// childResult reads how the job ended. printed: the jobrunner printed a
// line for it (stdout); exit says how the jobrunner ended when it had to
// be ended (else it serves on).
func (s *Supervisor) childResult(ctx, childCtx context.Context, exit procs.Exit, err error, printed, lost, cancelled bool, stdout []byte) childOutcome {
	out := childOutcome{exit: exit, leaseLost: lost, cancelled: cancelled}
	out.stopped = ctx.Err() != nil && !out.leaseLost && !out.cancelled
	switch {
	case err != nil && !printed:
		out.problem = fmt.Sprintf("jobrunner failed: %v", err)
	case errors.Is(childCtx.Err(), context.DeadlineExceeded) && !out.leaseLost && !out.stopped && !out.cancelled:
		out.problem = fmt.Sprintf("jobrunner did not stop within %s of the job's timeout and was killed", backstop)
	default:
		res, decodeErr := jobspec.DecodeResult(stdout)
		switch {
		case decodeErr == nil:
			out.result = res
		case printed:
			out.problem = "jobrunner printed no usable result"
		default:
			out.problem = fmt.Sprintf("jobrunner %s without a result", exit)
		}
	}
	return out
}

// fenceMargin is how long before the lease's end, as the supervisor last
// told it, a jobrunner stops its job: one heartbeat interval, which covers
// the renewal's trip, killing the engine and clock rate drift many times.
func fenceMargin(lease time.Duration) time.Duration { return lease / 4 }

// persist retries a fenced write with backoff until it lands, the fence
// says another worker holds the job (store.ErrLeaseLost, wrapped with what
// was written: the caller decides what that means, see refused), or the
// lease runs out (from then on cleanup re-queues the job, so the attempt
// is retried, not lost). A database outage thus delays an outcome instead
// of dropping it.
func (s *Supervisor) persist(log zerolog.Logger, l *lease, what string, write func() error) error {
	tries, gaveUp, err := s.writeRetry(l).Do(func(attempt int) (bool, error) {
		err := write()
		if !errors.Is(err, context.Canceled) {
			// A lost lease is the database's answer, not its failure.
			s.obs.DBOp("write", ignore(err, store.ErrLeaseLost))
		}
		// A write whose context ended (a stop) can never land, and the
		// heartbeat keeps the lease, so retrying it would never end.
		again := err != nil && !errors.Is(err, store.ErrLeaseLost) && !errors.Is(err, context.Canceled)
		if again && attempt == 1 {
			log.Warn().Err(err).Str("write", what).Msg("database write failed; retrying until it lands or the lease runs out")
		}
		return again, err
	})
	switch {
	case err == nil:
		if tries > 1 {
			log.Info().Str("write", what).Int("tries", tries).Msg("database write landed after retries")
		}
	case gaveUp:
		log.Error().Err(err).Str("write", what).Msg("database write failed until the lease ran out; the job will be retried after lease expiry")
	case errors.Is(err, store.ErrLeaseLost):
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// writeRetry is how writes about a held job are retried: soon at first,
// then every 5 s at most, jittered so that the supervisors of a fleet do
// not all return to a recovering database at once, and never past the
// job's lease (after it, the job is no longer ours to write about).
func (s *Supervisor) writeRetry(l *lease) tick.Retry {
	r := s.waits
	r.First, r.Max, r.Jitter, r.Until = 100*time.Millisecond, 5*time.Second, 0.2, l.expires
	return r
}

// forwardLines logs the jobrunner's own diagnostics with the logger of
// the job in hand.
func forwardLines(r io.Reader, log func() zerolog.Logger) {
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			l := log()
			l.Warn().Str("stream", "jobrunner.stderr").Msg(string(bytes.TrimRight(line, "\r\n")))
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

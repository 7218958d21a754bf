package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
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

// runChild runs the jobrunner for spec while the heartbeat keeps l's lease
// alive, and tells the jobrunner of each renewal (see jobspec.Lease).
func (s *Supervisor) runChild(ctx context.Context, log zerolog.Logger, l *lease, spec *jobspec.Spec) childOutcome {
	if l.cancelRequested() {
		return childOutcome{cancelled: true, problem: "cancelled before the jobrunner started"}
	}
	renewR, renewW, err := os.Pipe()
	if err != nil {
		return childOutcome{problem: fmt.Sprintf("create the lease renewal pipe: %v", err)}
	}
	defer renewW.Close()
	spec.Lease = &jobspec.Lease{RemainingSeconds: l.remaining().Seconds(), MarginSeconds: fenceMargin(l.length).Seconds(), RenewalFD: 3}
	var stdin bytes.Buffer
	if err := spec.Encode(&stdin); err != nil {
		renewR.Close()
		return childOutcome{problem: fmt.Sprintf("encode job spec: %v", err)}
	}
	childCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if spec.TimeoutSeconds > 0 {
		var stop context.CancelFunc
		childCtx, stop = context.WithTimeout(childCtx, time.Duration(spec.TimeoutSeconds*float64(time.Second))+backstop)
		defer stop()
	}
	killer := &treeKiller{}
	defer l.watchCancel(func() {
		cancel()                                 // SIGTERM now ...
		time.AfterFunc(cancelGrace, killer.kill) // ... SIGKILL soon
	})()
	var lost atomic.Bool
	detach := l.attach(func(left time.Duration) { tellRenewal(renewW, left) }, func() { lost.Store(true); cancel() })

	var stdout bytes.Buffer
	exit, err := procs.Run(childCtx, procs.Command{
		Path: s.jobrunner, Env: spec.Env, Stdin: &stdin, KillGrace: childKillGrace,
		ExtraFiles: []*os.File{renewR}, Children: s.children,
		Started: func(pid int) {
			renewR.Close() // the child has its copy now: a dead child then makes writes fail
			killer.started(pid)
		},
		// SIGTERM, not SIGKILL, if this supervisor dies: the jobrunner then
		// kills its engine and everything the engine started.
		DeathSignal: syscall.SIGTERM,
		Stdout: func(r io.Reader) {
			_, _ = io.Copy(&stdout, io.LimitReader(r, maxResultBytes))
			_, _ = io.Copy(io.Discard, r)
		},
		Stderr: func(r io.Reader) { forwardLines(r, log) },
	})
	killer.exited()
	_ = renewR.Close() // when the child never started; else closed already
	detach()
	cancel()
	return s.childResult(ctx, childCtx, exit, err, lost.Load(), l.cancelRequested(), stdout.Bytes())
}

// childResult reads how the child ended.
func (s *Supervisor) childResult(ctx, childCtx context.Context, exit procs.Exit, err error, lost, cancelled bool, stdout []byte) childOutcome {
	out := childOutcome{exit: exit, leaseLost: lost, cancelled: cancelled}
	out.stopped = ctx.Err() != nil && !out.leaseLost && !out.cancelled
	switch {
	case err != nil:
		out.problem = fmt.Sprintf("cannot start jobrunner: %v", err)
	case errors.Is(childCtx.Err(), context.DeadlineExceeded) && !out.leaseLost && !out.stopped && !out.cancelled:
		out.problem = fmt.Sprintf("jobrunner did not stop within %s of the job's timeout and was killed", backstop)
	default:
		res, decodeErr := jobspec.DecodeResult(bytes.TrimSpace(stdout))
		if decodeErr != nil {
			out.problem = fmt.Sprintf("jobrunner %s without a result", exit)
		} else {
			out.result = res
		}
	}
	return out
}

// tellRenewal writes one renewal line: the seconds the lease has left. A
// jobrunner that does not read must not stall the heartbeat of every job.
func tellRenewal(w *os.File, left time.Duration) {
	_ = w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = fmt.Fprintf(w, "%.3f\n", left.Seconds())
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

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
)

// finalWriter is what differs between a run's end and a build's: the
// fenced write of its final state, and what follows once it is stored.
type finalWriter interface {
	// writeFinal stores the job's final state, fenced on its claim.
	writeFinal(ctx context.Context, log zerolog.Logger, e ending) error
	// afterFinal runs once the final state is stored.
	afterFinal(ctx context.Context, log zerolog.Logger, e ending)
}

// finish is the one path by which a claimed job ends: a cancel confirmed
// (the worker writes nothing), a re-queue, or a final state written by w.
// Each is followed by its log line and its event in the job's events file.
func (s *Supervisor) finish(ctx context.Context, log zerolog.Logger, l *lease, spec *jobspec.Spec,
	w finalWriter, e ending, started time.Time) {
	f := l.fence
	l.closeBegins()
	if e.event == store.EventCancel {
		e = s.confirmCancelled(log, l)
	}
	var err error
	cancelled := e.event == store.EventCancel
	switch e.event {
	case store.EventCancel:
	case store.EventHandBack:
		var how store.HandBack
		var prior int
		if how, prior, err = s.handBack(ctx, log, l, e); err != nil {
			break
		}
		if how == store.HandBackExhausted {
			err = s.complete(ctx, log, l, spec, w, s.handBacksExhausted(f, prior), started)
			break
		}
		l.ended(e)
		appendEvent(log, spec, "warning", string(f.Kind)+".requeued", kindTitle(f.Kind)+" re-queued: "+e.message,
			map[string]any{"attempt": f.Attempt, "error": e.message, "handed_back": true, "handbacks": prior + 1,
				"attempt_counted": how == store.HandBackCounted})
	case store.EventRetryLater:
		if err = s.requeue(ctx, log, l, e); err == nil {
			l.ended(e)
			appendEvent(log, spec, "warning", string(f.Kind)+".requeued", kindTitle(f.Kind)+" re-queued: "+e.message,
				map[string]any{"attempt": f.Attempt, "error": e.message})
		}
	default:
		err = s.complete(ctx, log, l, spec, w, e, started)
	}
	if errors.Is(err, store.ErrLeaseLost) {
		cancelled = s.refused(log, l, err)
	}
	if cancelled {
		s.endCancelled(log, l, spec, started)
	}
}

// complete writes a job's final state through w, then logs it and appends
// its <kind>.complete event.
func (s *Supervisor) complete(ctx context.Context, log zerolog.Logger, l *lease, spec *jobspec.Spec,
	w finalWriter, e ending, started time.Time) error {
	f := l.fence
	if err := w.writeFinal(ctx, log, e); err != nil {
		return err
	}
	l.ended(e)
	w.afterFinal(ctx, log, e)
	status := store.EndStatus(f.Kind, e.succeeded())
	logEnd(log, status, e.code, e.message, started)
	appendEvent(log, spec, levelFor(e.succeeded()), completeEvent(f.Kind), kindTitle(f.Kind)+" "+string(status),
		terminalData(status, e.code, e.message, f.Attempt))
	return nil
}

// requeue writes a retry: another attempt after the backoff (a shutdown's
// hand-back is handBack).
func (s *Supervisor) requeue(ctx context.Context, log zerolog.Logger, l *lease, e ending) error {
	delay := s.cfg.Backoff(l.fence.Attempt)
	err := s.persist(log, l, "requeue", func() error {
		return s.store.Requeue(ctx, l.fence, delay, e.message)
	})
	if err != nil {
		return err
	}
	log.Warn().Str("error", e.message).Float64("retry_in_s", delay.Seconds()).Bool("attempt_counted", true).Msg("job re-queued")
	return nil
}

// handBack re-queues a job a shutdown stopped, at once: its attempt is
// given back for the first ADE_WORKER_MAX_HANDBACKS hand-backs and counted
// after that (store.HandBack), so a job longer than the shutdown grace ends
// even on a fleet that scales down or rolls out more often than it runs.
func (s *Supervisor) handBack(ctx context.Context, log zerolog.Logger, l *lease, e ending) (how store.HandBack, prior int, err error) {
	err = s.persist(log, l, "requeue", func() error {
		var werr error
		how, prior, werr = s.store.HandBack(ctx, l.fence, e.message, s.cfg.MaxHandBacks)
		return werr
	})
	if err == nil && how != store.HandBackExhausted {
		log.Warn().Str("error", e.message).Int("handbacks", prior+1).Bool("attempt_counted", how == store.HandBackCounted).
			Msg("job handed back")
	}
	return how, prior, err
}

// handBacksExhausted is the failure of a job handed back more often than
// ADE_WORKER_MAX_HANDBACKS with its attempts used up.
func (s *Supervisor) handBacksExhausted(f store.Fence, prior int) ending {
	code := jobspec.CodeGenericFailure
	return ending{event: store.EventFail, code: &code, message: fmt.Sprintf("Handed back at shutdown %d times (longer than the shutdown grace each time); "+
		"gave up after %d attempts (ADE_WORKER_MAX_HANDBACKS=%d hand-backs are free, later ones count as attempts)",
		prior+1, f.Attempt, s.cfg.MaxHandBacks)}
}

// handBackIfStopped hands a job back when a write before its child started
// failed because the supervisor is stopping (ctx ended), rather than leave
// it to lease expiry: another supervisor takes it at once.
func (s *Supervisor) handBackIfStopped(ctx context.Context, log zerolog.Logger, l *lease, spec *jobspec.Spec,
	w finalWriter, started time.Time) {
	if ctx.Err() != nil {
		s.finish(context.WithoutCancel(ctx), log, l, spec, w, shutDown, started)
	}
}

// kindTitle is the kind as the first word of an event's message.
func kindTitle(k store.Kind) string {
	if k == store.KindBuild {
		return "Build"
	}
	return "Run"
}

// completeEvent names the event of a job's end, cancels included.
func completeEvent(k store.Kind) string { return string(k) + ".complete" }

// appendEvent writes one worker event to a job's events file after the
// database holds the outcome it describes. The file is reached from its
// root without following links; on a full disk the event is left out (the
// file still ends on a whole line, see eventlog) and a warning logged.
func appendEvent(log zerolog.Logger, spec *jobspec.Spec, level, event, message string, data map[string]any) {
	if spec == nil {
		return
	}
	l, err := eventlog.Open(spec.EventsPath, eventlog.Context{JobID: spec.JobID, WorkspaceID: spec.WorkspaceID,
		BuildID: spec.BuildID, ConfigurationID: spec.ConfigurationID}, eventlog.Options{Root: spec.EventsRoot()})
	if err == nil {
		err = l.Emit(level, event, message, data)
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		log.Warn().Err(err).Str("event", event).Msg("cannot append to events file")
	}
}

func terminalData(status store.Status, code *int, message string, attempt int) map[string]any {
	data := map[string]any{"status": string(status), "exit_code": code, "attempt": attempt}
	if message != "" {
		data["error"] = message
	}
	return data
}

// logEnd writes the one line every finished job gets.
func logEnd(log zerolog.Logger, status store.Status, code *int, message string, started time.Time) {
	ev := log.Info()
	if status != store.StatusSucceeded && status != store.StatusReady {
		ev = log.Warn()
	}
	if code != nil {
		ev = ev.Int("exit_code", *code)
	}
	if message != "" {
		ev = ev.Str("error", message)
	}
	ev.Str("status", string(status)).Float64("duration_ms", float64(time.Since(started).Microseconds())/1000).Msg("job finished")
}

func levelFor(ok bool) string {
	if ok {
		return "info"
	}
	return "error"
}

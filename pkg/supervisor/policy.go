package supervisor

import (
	"fmt"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
)

// The job policy: what happens to a job whose child ended or whose lease
// expired. Decided here, in Go; the store only runs the statements.

// ending is the supervisor's decision about a job whose child has ended:
// the lifecycle event it takes (store.Lifecycle) and what goes with it.
type ending struct {
	// event is one of: succeed, fail, retry later (re-queue with backoff),
	// hand back (re-queue now, attempt not counted: shutdown), cancel (the
	// row was cancelled: the worker writes nothing, see cancel.go).
	event   store.Event
	code    *int
	message string
	result  *jobspec.Result
}

// succeeded reports whether the job ends as succeeded (a run) or ready (a
// build).
func (e ending) succeeded() bool { return e.event == store.EventSucceed }

// shutDown is the ending of a job the supervisor stopped because it is
// shutting down: handed back, its attempt not counted.
var shutDown = ending{event: store.EventHandBack, message: "Worker shut down; job handed back"}

// decide maps a child's outcome to what gets written.
func (s *Supervisor) decide(f store.Fence, maxAttempts int, out childOutcome) ending {
	switch {
	case out.cancelled:
		// The cancel wins even over a result the child printed meanwhile.
		return ending{event: store.EventCancel}
	case out.stopped && (out.result == nil || out.result.Reason == jobspec.ReasonCancelled):
		// Stopped by the shutdown; a job that finished just before it keeps
		// its real outcome.
		return shutDown
	case out.result == nil:
		// The class of jobspec.ReasonNoResult: transient.
		return s.retryOrFail(f, maxAttempts, out.problem, jobspec.CodeGenericFailure, nil)
	case out.result.Status != jobspec.StatusSucceeded && jobspec.ClassOf(out.result.Reason) == jobspec.Transient:
		return s.retryOrFail(f, maxAttempts, out.result.Error, out.result.ExitCode, out.result)
	}
	r := out.result
	code := r.ExitCode
	event := store.EventFail
	if r.Status == jobspec.StatusSucceeded {
		event = store.EventSucceed
	}
	return ending{event: event, code: &code, message: r.Error, result: r}
}

func (s *Supervisor) retryOrFail(f store.Fence, maxAttempts int, msg string, code int, r *jobspec.Result) ending {
	if f.Attempt < maxAttempts {
		return ending{event: store.EventRetryLater, message: msg, result: r}
	}
	return ending{event: store.EventFail, code: &code, message: fmt.Sprintf("%s (gave up after %d attempts)", msg, f.Attempt), result: r}
}

// rejected is the ending of a job that cannot run because of its own data:
// failed at once, never retried.
func rejected(r *Rejection) ending {
	code := r.Code
	return ending{event: store.EventFail, code: &code, message: r.Message}
}

// stuckBuildMessage is the error of a build failed for being left building
// without a lease past the build timeout.
func stuckBuildMessage(timeout time.Duration) string {
	return fmt.Sprintf("Build timed out after %s", timeout)
}

// expiryDecisions is the policy for jobs whose lease expired (their
// supervisor died or froze): another attempt after the backoff of the
// attempt that was lost, or failure once attempts are used up.
func expiryDecisions(kind store.Kind, jobs []store.ExpiredLease, backoff func(attempt int) time.Duration) []store.LeaseExpiry {
	msg := store.MsgRunLeaseExpired
	if kind == store.KindBuild {
		msg = store.MsgBuildLeaseExpired
	}
	out := make([]store.LeaseExpiry, len(jobs))
	for i, j := range jobs {
		d := store.LeaseExpiry{ID: j.ID, Attempt: j.AttemptCount, Message: msg}
		if j.AttemptCount >= j.MaxAttempts {
			d.Fail, d.Message = true, fmt.Sprintf("%s after %d attempts", msg, j.AttemptCount)
		} else {
			d.Delay = backoff(j.AttemptCount)
		}
		out[i] = d
	}
	return out
}

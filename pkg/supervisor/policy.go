package supervisor

import (
	"fmt"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
)

// The job policy: what happens to a job whose child ended or whose lease
// expired. Decided here, in Go; the store only runs the statements.

// ending is the supervisor's decision about a job whose child has ended.
type ending struct {
	retry     bool // re-queue with backoff
	handBack  bool // re-queue now, attempt not counted (shutdown)
	cancelled bool // the row was cancelled: write nothing (see cancel.go)
	succeeded bool
	code      *int
	message   string
	result    *jobspec.Result
}

// shutDown is the ending of a job the supervisor stopped because it is
// shutting down: handed back, its attempt not counted.
var shutDown = ending{handBack: true, message: "Worker shut down; job handed back"}

// decide maps a child's outcome to what gets written.
func (s *Supervisor) decide(f store.Fence, maxAttempts int, out childOutcome) ending {
	switch {
	case out.cancelled:
		// The cancel wins even over a result the child printed meanwhile.
		return ending{cancelled: true}
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
	return ending{succeeded: r.Status == jobspec.StatusSucceeded, code: &code, message: r.Error, result: r}
}

func (s *Supervisor) retryOrFail(f store.Fence, maxAttempts int, msg string, code int, r *jobspec.Result) ending {
	if f.Attempt < maxAttempts {
		return ending{retry: true, message: msg, result: r}
	}
	return ending{code: &code, message: fmt.Sprintf("%s (gave up after %d attempts)", msg, f.Attempt), result: r}
}

// rejected is the ending of a job that cannot run because of its own data:
// failed at once, never retried.
func rejected(r *Rejection) ending {
	code := r.Code
	return ending{code: &code, message: r.Message}
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

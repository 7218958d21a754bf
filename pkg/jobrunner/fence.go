package jobrunner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// ErrLeaseLapsed is the cause of a job context ended by the fence: the
// supervisor did not renew the job's lease in time (it froze, died or lost
// the database), so another supervisor may soon claim the job.
var ErrLeaseLapsed = errors.New("the supervisor did not renew the job's lease in time; the job was stopped so it never runs twice at once")

// Fence returns a context that ends with ErrLeaseLapsed once the lease in l
// is about to lapse: when the seconds the latest renewal line said were
// left, less l.MarginSeconds, have passed on this process's monotonic
// clock. take hands Fence one renewal line ("SECONDS", or "SECONDS TAG"
// when l.Tag is set; lines of another tag are ignored). Renewals ending
// (the supervisor died or finished) stop no job by themselves; the time
// left still runs out. Stop the returned cancel func to release the timer.
func Fence(ctx context.Context, l *jobspec.Lease) (_ context.Context, take func(line string), _ context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	margin := seconds(l.MarginSeconds)
	var mu sync.Mutex
	timer := time.AfterFunc(seconds(l.RemainingSeconds)-margin, func() { cancel(ErrLeaseLapsed) })
	take = func(line string) {
		left, ok := renewalFor(l.Tag, line)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			timer.Reset(left - margin)
		}
	}
	return ctx, take, func() {
		mu.Lock()
		timer.Stop()
		mu.Unlock()
		cancel(context.Canceled)
	}
}

// renewalFor reads the time left from a renewal line for the job tagged
// tag; ok is false for a line of another job or one that is unusable (said
// on stderr: the supervisor never writes one).
func renewalFor(tag, line string) (left time.Duration, ok bool) {
	fields := strings.Fields(line)
	if len(fields) == 2 && fields[1] != tag {
		return 0, false // an earlier job's renewal, still in the pipe
	}
	if len(fields) == 2 || (len(fields) == 1 && tag == "") {
		if secs, err := strconv.ParseFloat(fields[0], 64); err == nil && secs >= 0 {
			return seconds(secs), true
		}
	}
	fmt.Fprintf(os.Stderr, "jobrunner: ignoring a lease renewal line %q: want the seconds left%s\n", line, tagWanted(tag))
	return 0, false
}

func tagWanted(tag string) string {
	if tag == "" {
		return ""
	}
	return " and the tag " + tag
}

// ReadRenewals hands every line of r to take until r ends.
func ReadRenewals(r io.Reader, take func(line string)) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		take(sc.Text())
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// LeaseLapsed turns the result of a job stopped by the fence into one that
// says why; a result that was final before the fence struck is kept.
func LeaseLapsed(res *jobspec.Result) *jobspec.Result {
	if res.Status == jobspec.StatusSucceeded || res.Reason != jobspec.ReasonCancelled {
		return res
	}
	res.Reason, res.Error = jobspec.ReasonLeaseLapsed, ErrLeaseLapsed.Error()
	res.Retryable = jobspec.ClassOf(res.Reason) == jobspec.Transient
	return res
}

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
// is about to lapse: when the seconds the latest renewal line from
// renewals said were left, less l.MarginSeconds, have passed on this
// process's monotonic clock. The renewal stream ending (the supervisor
// died or finished) stops no job by itself; the time left still runs out.
// Stop the returned cancel func to release the watcher.
func Fence(ctx context.Context, l *jobspec.Lease, renewals io.Reader) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	margin := seconds(l.MarginSeconds)
	var mu sync.Mutex
	timer := time.AfterFunc(seconds(l.RemainingSeconds)-margin, func() { cancel(ErrLeaseLapsed) })
	renew := func(left time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			timer.Reset(left - margin)
		}
	}
	go func() {
		sc := bufio.NewScanner(renewals)
		for sc.Scan() {
			left, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64)
			if err != nil || left < 0 {
				fmt.Fprintf(os.Stderr, "jobrunner: ignoring a lease renewal line %q: want the seconds left\n", sc.Text())
				continue
			}
			renew(seconds(left))
		}
	}()
	return ctx, func() {
		mu.Lock()
		timer.Stop()
		mu.Unlock()
		cancel(context.Canceled)
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

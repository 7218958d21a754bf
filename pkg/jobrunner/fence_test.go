package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
)

// The fence holds while renewals arrive and strikes once they stop, after
// the time left less the margin, on this process's clock.
func TestFence(t *testing.T) {
	t.Parallel()
	r, w := io.Pipe()
	defer w.Close()
	l := &jobspec.Lease{RemainingSeconds: 0.4, MarginSeconds: 0.1, RenewalFD: 3}
	ctx, take, stop := Fence(context.Background(), l)
	defer stop()
	go ReadRenewals(r, take)
	start := time.Now()
	for i := 0; i < 5; i++ { // 0.5 s of renewals, past the first lease's 0.3 s
		// Paces the renewals as a supervisor's heartbeat would; not a wait.
		time.Sleep(100 * time.Millisecond)
		fmt.Fprintf(w, "%.3f\n", 0.4)
		if ctx.Err() != nil {
			t.Fatalf("fence struck after %v while renewals arrived", time.Since(start))
		}
	}
	renewed := time.Now()
	<-ctx.Done()
	took := time.Since(renewed)
	if !errors.Is(context.Cause(ctx), ErrLeaseLapsed) {
		t.Errorf("cause = %v, want ErrLeaseLapsed", context.Cause(ctx))
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("fence struck %v after the last renewal, want about 0.3 s", took)
	}
}

// A renewal stream that ends (the supervisor went away) does not extend
// the lease: the time left still runs out.
func TestFenceStreamEnds(t *testing.T) {
	t.Parallel()
	r, w := io.Pipe()
	w.Close()
	ctx, take, stop := Fence(context.Background(), &jobspec.Lease{RemainingSeconds: 0.3, RenewalFD: 3})
	defer stop()
	go ReadRenewals(r, take)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("fence did not strike after the stream ended")
	}
	if !errors.Is(context.Cause(ctx), ErrLeaseLapsed) {
		t.Errorf("cause = %v", context.Cause(ctx))
	}
}

// A jobrunner serving job after job reads its renewals on one descriptor:
// a job's fence takes only the lines of its own tag, so an earlier job's
// renewal left in the pipe never extends the next job's lease.
func TestFenceTakesOnlyItsTag(t *testing.T) {
	t.Parallel()
	ctx, take, stop := Fence(context.Background(), &jobspec.Lease{RemainingSeconds: 0.3, RenewalFD: 3, Tag: "7"})
	defer stop()
	renewed := time.Now()
	for _, line := range []string{"3600 6", "3600", "3600 7 x", "-1 7", "soon 7"} {
		take(line)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("another job's renewal (or a bad line) extended the lease")
	}
	if took := time.Since(renewed); took > 2*time.Second {
		t.Errorf("fence struck after %v, want about 0.3 s", took)
	}

	ctx, take, stop = Fence(context.Background(), &jobspec.Lease{RemainingSeconds: 0.3, RenewalFD: 3, Tag: "8"})
	defer stop()
	take("3600 8")
	select {
	case <-ctx.Done():
		t.Fatal("the job's own tagged renewal did not extend its lease")
	case <-time.After(600 * time.Millisecond):
	}
}

func TestLeaseLapsedResult(t *testing.T) {
	cancelled := &jobspec.Result{Status: jobspec.StatusFailed, Reason: jobspec.ReasonCancelled, Error: "stopped"}
	if got := LeaseLapsed(cancelled); got.Reason != jobspec.ReasonLeaseLapsed || !got.Retryable || got.Error != ErrLeaseLapsed.Error() {
		t.Errorf("cancelled job: %+v", got)
	}
	done := &jobspec.Result{Status: jobspec.StatusSucceeded}
	if got := LeaseLapsed(done); got.Reason != "" {
		t.Errorf("succeeded job changed: %+v", got)
	}
}

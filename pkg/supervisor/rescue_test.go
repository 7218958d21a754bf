package supervisor

import (
	"reflect"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

func TestExpiryDecisions(t *testing.T) {
	backoff := func(attempt int) time.Duration { return time.Duration(attempt) * 10 * time.Second }
	jobs := []store.ExpiredLease{
		{ID: "a", AttemptCount: 1, MaxAttempts: 3},
		{ID: "b", AttemptCount: 3, MaxAttempts: 3},
		{ID: "c", AttemptCount: 4, MaxAttempts: 3}, // more than allowed: still fails
		{ID: "d", AttemptCount: 2, MaxAttempts: 3},
	}
	tests := []struct {
		kind store.Kind
		want []store.LeaseExpiry
	}{
		{store.KindRun, []store.LeaseExpiry{
			{ID: "a", Attempt: 1, Delay: 10 * time.Second, Message: store.MsgRunLeaseExpired},
			{ID: "b", Attempt: 3, Fail: true, Message: store.MsgRunLeaseExpired + " after 3 attempts"},
			{ID: "c", Attempt: 4, Fail: true, Message: store.MsgRunLeaseExpired + " after 4 attempts"},
			{ID: "d", Attempt: 2, Delay: 20 * time.Second, Message: store.MsgRunLeaseExpired},
		}},
		{store.KindBuild, []store.LeaseExpiry{
			{ID: "a", Attempt: 1, Delay: 10 * time.Second, Message: store.MsgBuildLeaseExpired},
			{ID: "b", Attempt: 3, Fail: true, Message: store.MsgBuildLeaseExpired + " after 3 attempts"},
			{ID: "c", Attempt: 4, Fail: true, Message: store.MsgBuildLeaseExpired + " after 4 attempts"},
			{ID: "d", Attempt: 2, Delay: 20 * time.Second, Message: store.MsgBuildLeaseExpired},
		}},
	}
	for _, tt := range tests {
		if got := expiryDecisions(tt.kind, jobs, backoff); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: expiryDecisions =\n%+v\nwant\n%+v", tt.kind, got, tt.want)
		}
	}
	if got := expiryDecisions(store.KindRun, nil, backoff); len(got) != 0 {
		t.Errorf("no jobs: %+v", got)
	}
}

// The ADE API and operators match on this text.
func TestStuckBuildMessage(t *testing.T) {
	if got, want := stuckBuildMessage(10*time.Minute), "Build timed out after 10m0s"; got != want {
		t.Errorf("stuckBuildMessage = %q, want %q", got, want)
	}
}

func TestLeaseLostStopsChildOnce(t *testing.T) {
	l := newLease(store.Fence{Kind: store.KindRun, ID: "r"}, time.Minute, time.Now())
	stops := 0
	var told []time.Duration
	detach := l.attach(func(left time.Duration) { told = append(told, left) }, func() { stops++ })
	l.renewed(time.Now())
	if len(told) != 1 || told[0] <= 50*time.Second || told[0] > time.Minute {
		t.Errorf("renewal told the child %v, want about a minute left", told)
	}
	if !l.markLost() || l.markLost() {
		t.Error("markLost should report the first loss only")
	}
	if stops != 1 {
		t.Errorf("child stopped %d times, want 1", stops)
	}
	detach()
	// A child attached after the loss is stopped at once.
	l.attach(nil, func() { stops++ })
	if stops != 2 {
		t.Errorf("late child stopped %d times in all, want 2", stops)
	}
}

package supervisor

import (
	"testing"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

func TestOutcomeOfEnding(t *testing.T) {
	code := func(c int) *int { return &c }
	tests := []struct {
		name string
		e    *ending // nil: the job's outcome was never written
		want string
	}{
		{"never written", nil, telemetry.OutcomeLeaseLost},
		{"succeeded", &ending{event: store.EventSucceed, code: code(0)}, telemetry.OutcomeSucceeded},
		{"failed", &ending{event: store.EventFail, code: code(7)}, telemetry.OutcomeFailed},
		{"rejected without a code", &ending{event: store.EventFail, message: "bad row"}, telemetry.OutcomeFailed},
		{"timed out", &ending{event: store.EventFail, code: code(jobspec.CodeTimeout)}, telemetry.OutcomeTimedOut},
		{"retried", &ending{event: store.EventRetryLater}, telemetry.OutcomeRetried},
		{"handed back", &ending{event: store.EventHandBack}, telemetry.OutcomeHandedBack},
	}
	for _, tt := range tests {
		l := &lease{}
		if tt.e != nil {
			l.ended(*tt.e)
		}
		if got := l.outcomeOf(); got != tt.want {
			t.Errorf("%s: outcome %q, want %q", tt.name, got, tt.want)
		}
	}
}

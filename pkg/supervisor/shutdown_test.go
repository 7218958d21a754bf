package supervisor

import (
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/settings"
)

// The bound a platform's grace must exceed: the defaults give 50 s, so the
// old Kubernetes grace of 45 s let the kubelet's SIGKILL land mid-write.
func TestShutdownBound(t *testing.T) {
	for _, tt := range []struct {
		grace, lease, want time.Duration
	}{
		{30 * time.Second, 15 * time.Second, 50 * time.Second},
		{0, 2 * time.Second, 7 * time.Second},
		{10 * time.Minute, time.Minute, 11*time.Minute + 5*time.Second},
	} {
		cfg := &settings.Settings{ShutdownGrace: tt.grace, LeaseSeconds: tt.lease}
		if got := ShutdownBound(cfg); got != tt.want {
			t.Errorf("grace %s, lease %s: bound %s, want %s", tt.grace, tt.lease, got, tt.want)
		}
	}
}

package supervisor

import (
	"time"

	"github.com/ade-org/ade-worker/pkg/settings"
)

// childKillGrace is how long a stopped jobrunner's process group has
// between SIGTERM and SIGKILL.
const childKillGrace = 5 * time.Second

// ShutdownBound is the longest a supervisor can take from SIGTERM to exit:
// the shutdown grace for running jobs, then the kill grace of the jobs it
// stops, then the hand-back writes, which retry through a database outage
// until the lease runs out. A container platform's grace period
// (Kubernetes' terminationGracePeriodSeconds, Compose's stop_grace_period)
// must be longer, or its SIGKILL can land mid-write.
func ShutdownBound(cfg *settings.Settings) time.Duration {
	return cfg.ShutdownGrace + childKillGrace + cfg.LeaseSeconds
}

package supervisor

import (
	"context"

	"github.com/ade-org/ade-worker/pkg/gc"
)

// collectGarbage runs the garbage collector every ADE_WORKER_GC_INTERVAL
// (0: never) until ctx ends. Supervisors sharing a database take turns: a
// pass that finds the gc lock held is skipped.
func (s *Supervisor) collectGarbage(ctx context.Context) {
	c := gc.New(s.store, s.planner.Layout(), gc.PolicyFrom(s.cfg), s.log)
	c.OnPass = s.gcPassed
	c.Run(ctx, s.cfg.GCInterval)
}

// gcPassed counts what each gc pass of this supervisor removed, per target
// (ade_worker_gc_removed_total{target}).
func (s *Supervisor) gcPassed(res *gc.Result) {
	for _, t := range gc.Targets {
		n, _ := res.Removed(t)
		s.obs.GCRemoved(string(t), n)
	}
}

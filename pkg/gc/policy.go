package gc

import (
	"fmt"
	"time"

	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
)

// Policy says how old things must be before a pass removes them. A zero
// TTL keeps that kind of folder forever.
type Policy struct {
	RunTTL  time.Duration // run folders, after the run completed
	VenvTTL time.Duration // build folders, after their last use
	TmpAge  time.Duration // leftover temporary build folders
}

// PolicyFrom reads the policy from the settings: temporary build folders
// go once they are twice the build timeout old, when no build can still be
// writing them.
func PolicyFrom(cfg *settings.Settings) Policy {
	return Policy{RunTTL: cfg.RunArtifactTTL, VenvTTL: cfg.VenvTTL, TmpAge: 2 * cfg.BuildTimeout}
}

// runVerdict decides whether a finished run's folder goes. The query that
// lists runs already asks the same; this keeps the rule in one readable
// place and guards against a row that changed meaning.
func runVerdict(r store.FinishedRun, now time.Time, ttl time.Duration) (bool, string) {
	switch {
	case ttl <= 0:
		return false, "run folders are kept forever"
	case !r.Status.Final():
		return false, "run is " + string(r.Status)
	case !r.DoneAt.Valid:
		return false, "run has no completed_at"
	case now.Sub(r.DoneAt.Time) <= ttl:
		return false, "run completed " + ago(now, r.DoneAt.Time)
	}
	return true, fmt.Sprintf("run %s %s", r.Status, ago(now, r.DoneAt.Time))
}

// buildLastUse is when a build was last needed: its newest run's start or
// end, or when the build finished if that is later; without either, when it
// started or was created.
func buildLastUse(b store.GCBuild, runs store.Time) time.Time {
	var last time.Time
	for _, t := range []store.Time{runs, b.FinishedAt} {
		if t.Valid && t.Time.After(last) {
			last = t.Time
		}
	}
	for _, t := range []store.Time{b.StartedAt, b.CreatedAt} {
		if last.IsZero() && t.Valid {
			last = t.Time
		}
	}
	return last
}

// venvVerdict decides whether a build's folder goes. inUse is why a live
// run or a configuration still needs it ("" when none does).
func venvVerdict(b store.GCBuild, inUse string, lastUse, now time.Time, ttl time.Duration) (bool, string) {
	switch {
	case ttl <= 0:
		return false, "venvs are kept forever"
	case b.Status == store.StatusQueued || b.Status == store.StatusBuilding:
		return false, "build is " + string(b.Status)
	case inUse != "":
		return false, inUse
	case lastUse.IsZero():
		return false, "build has no timestamps"
	case now.Sub(lastUse) <= ttl:
		return false, "last used " + ago(now, lastUse)
	}
	return true, fmt.Sprintf("%s build, last used %s", b.Status, ago(now, lastUse))
}

// tmpVerdict decides whether a temporary build folder goes: old enough that
// no build can still be writing it. The caller also holds the build lock,
// which every build and rebuild holds while it writes.
func tmpVerdict(modified, now time.Time, age time.Duration) (bool, string) {
	if now.Sub(modified) <= age {
		return false, "temporary build folder modified " + ago(now, modified)
	}
	return true, "temporary build folder left by an interrupted build, modified " + ago(now, modified)
}

// ago says how long before now t was, with the date.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	var span string
	switch {
	case d >= 48*time.Hour:
		span = fmt.Sprintf("%.1f days", d.Hours()/24)
	case d >= 2*time.Hour:
		span = fmt.Sprintf("%.1f hours", d.Hours())
	default:
		span = d.Round(time.Second).String()
	}
	return fmt.Sprintf("%s ago (%s)", span, t.UTC().Format("2006-01-02 15:04:05 UTC"))
}

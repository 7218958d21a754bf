package gc

import (
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func at(days float64) store.Time {
	return store.Time{Time: now.Add(-time.Duration(days * 24 * float64(time.Hour))), Valid: true}
}

const month = 30 * 24 * time.Hour

func TestRunVerdict(t *testing.T) {
	tests := []struct {
		name   string
		run    store.FinishedRun
		ttl    time.Duration
		remove bool
		why    string
	}{
		{"old succeeded", store.FinishedRun{Status: "succeeded", DoneAt: at(31)}, month, true, "run succeeded 31.0 days ago"},
		{"old failed", store.FinishedRun{Status: "failed", DoneAt: at(40)}, month, true, "run failed"},
		{"old cancelled", store.FinishedRun{Status: "cancelled", DoneAt: at(40)}, month, true, "run cancelled"},
		{"young", store.FinishedRun{Status: "succeeded", DoneAt: at(29)}, month, false, "completed 29.0 days ago"},
		{"exactly the ttl", store.FinishedRun{Status: "succeeded", DoneAt: at(30)}, month, false, "completed"},
		{"running is never removed", store.FinishedRun{Status: "running", DoneAt: at(400)}, month, false, "run is running"},
		{"queued is never removed", store.FinishedRun{Status: "queued", DoneAt: at(400)}, month, false, "run is queued"},
		{"no completion time", store.FinishedRun{Status: "failed"}, month, false, "no completed_at"},
		{"ttl 0 keeps forever", store.FinishedRun{Status: "succeeded", DoneAt: at(4000)}, 0, false, "kept forever"},
		{"fractional ttl", store.FinishedRun{Status: "succeeded", DoneAt: at(0.5)}, 6 * time.Hour, true, "hours ago"},
	}
	for _, tt := range tests {
		remove, why := runVerdict(tt.run, now, tt.ttl)
		if remove != tt.remove || !strings.Contains(why, tt.why) {
			t.Errorf("%s: got %v %q, want %v and %q", tt.name, remove, why, tt.remove, tt.why)
		}
	}
}

func TestBuildLastUse(t *testing.T) {
	tests := []struct {
		name  string
		build store.GCBuild
		runs  store.Time
		want  store.Time
	}{
		{"newest run", store.GCBuild{FinishedAt: at(60), CreatedAt: at(61)}, at(40), at(40)},
		{"finished after its runs (a rebuild)", store.GCBuild{FinishedAt: at(10)}, at(40), at(10)},
		{"no runs: finished", store.GCBuild{FinishedAt: at(50), StartedAt: at(51), CreatedAt: at(52)}, store.Time{}, at(50)},
		{"never finished: started", store.GCBuild{StartedAt: at(51), CreatedAt: at(52)}, store.Time{}, at(51)},
		{"never started: created", store.GCBuild{CreatedAt: at(52)}, store.Time{}, at(52)},
		{"nothing", store.GCBuild{}, store.Time{}, store.Time{}},
	}
	for _, tt := range tests {
		got := buildLastUse(tt.build, tt.runs)
		if !got.Equal(tt.want.Time) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want.Time)
		}
	}
}

func TestVenvVerdict(t *testing.T) {
	ready := store.GCBuild{Status: "ready"}
	tests := []struct {
		name    string
		build   store.GCBuild
		inUse   string
		lastUse store.Time
		ttl     time.Duration
		remove  bool
		why     string
	}{
		{"unused for longer than the ttl", ready, "", at(31), month, true, "ready build, last used 31.0 days ago"},
		{"failed build's leftovers", store.GCBuild{Status: "failed"}, "", at(31), month, true, "failed build"},
		{"used recently", ready, "", at(29), month, false, "last used 29.0 days ago"},
		{"a queued run needs it", ready, "a queued run needs it", at(300), month, false, "queued run"},
		{"a running run needs it", ready, "a running run needs it", at(300), month, false, "running run"},
		{"active build", ready, "active build of configuration c", at(300), month, false, "active build"},
		{"queued build", store.GCBuild{Status: "queued"}, "", at(300), month, false, "build is queued"},
		{"building build", store.GCBuild{Status: "building"}, "", at(300), month, false, "build is building"},
		{"no timestamps", ready, "", store.Time{}, month, false, "no timestamps"},
		{"ttl 0 keeps forever", ready, "", at(3000), 0, false, "kept forever"},
	}
	for _, tt := range tests {
		var last time.Time
		if tt.lastUse.Valid {
			last = tt.lastUse.Time
		}
		remove, why := venvVerdict(tt.build, tt.inUse, last, now, tt.ttl)
		if remove != tt.remove || !strings.Contains(why, tt.why) {
			t.Errorf("%s: got %v %q, want %v and %q", tt.name, remove, why, tt.remove, tt.why)
		}
	}
}

func TestTmpVerdict(t *testing.T) {
	age := 20 * time.Minute // twice a 10-minute build timeout
	for _, tt := range []struct {
		modified time.Duration // before now
		remove   bool
	}{{21 * time.Minute, true}, {20 * time.Minute, false}, {time.Minute, false}, {-time.Minute, false}} {
		if remove, why := tmpVerdict(now.Add(-tt.modified), now, age); remove != tt.remove || why == "" {
			t.Errorf("modified %v ago: got %v %q, want %v", tt.modified, remove, why, tt.remove)
		}
	}
}

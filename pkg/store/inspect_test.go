package store_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

func TestWhyNotRunning(t *testing.T) {
	t.Parallel()
	now := t0
	valid := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	at := func(t time.Time) store.Time { return store.Time{Time: t, Valid: true} }
	run := func(edit func(d *store.JobDetail)) *store.JobDetail {
		d := &store.JobDetail{Kind: store.KindRun, ID: "r1", Status: "queued", AttemptCount: 0, MaxAttempts: 3,
			BuildID: valid("b1"), BuildStatus: valid("ready"), AvailableAt: at(now.Add(-time.Second)), Claimable: true,
			WorkspaceID: "w1"}
		edit(d)
		return d
	}
	tests := []struct {
		name string
		job  *store.JobDetail
		want store.WaitReason // "" = not queued, no answer
		text string           // part of the message
	}{
		{"claimable", run(func(*store.JobDetail) {}), store.WaitClaimable, "claimable now"},
		{"available exactly now", run(func(d *store.JobDetail) { d.AvailableAt = at(now) }), store.WaitClaimable, "claimable now"},
		{"no build", run(func(d *store.JobDetail) { d.BuildID, d.BuildStatus = sql.NullString{}, sql.NullString{} }),
			store.WaitClaimable, store.MsgBuildRequired},
		{"build queued", run(func(d *store.JobDetail) { d.BuildStatus = valid("queued") }), store.WaitForBuild, "waiting for its build b1 (queued)"},
		{"build building", run(func(d *store.JobDetail) { d.BuildStatus = valid("building") }), store.WaitForBuild, "(building)"},
		{"build failed", run(func(d *store.JobDetail) { d.BuildStatus = valid("failed") }), store.WaitBuildFailed, store.MsgBuildFailedBefore},
		{"build cancelled", run(func(d *store.JobDetail) { d.BuildStatus = valid("cancelled") }), store.WaitBuildFailed, "is cancelled"},
		{"build row missing", run(func(d *store.JobDetail) { d.BuildStatus = sql.NullString{} }), store.WaitBuildMissing, "does not exist"},
		{"backoff", run(func(d *store.JobDetail) { d.AttemptCount, d.AvailableAt = 1, at(now.Add(90*time.Second)) }),
			store.WaitBackoff, "in backoff until 2025-03-04T10:01:30Z (in 1m30s), after attempt 1 of 3"},
		{"attempts used up", run(func(d *store.JobDetail) { d.AttemptCount = 3 }), store.WaitAttemptsUsedUp, "attempts used up (3 of 3)"},
		{"attempts used up beats backoff and build", run(func(d *store.JobDetail) {
			d.AttemptCount, d.AvailableAt, d.BuildStatus = 4, at(now.Add(time.Hour)), valid("queued")
		}), store.WaitAttemptsUsedUp, "(4 of 3)"},
		{"build beats backoff", run(func(d *store.JobDetail) { d.AvailableAt, d.BuildStatus = at(now.Add(time.Hour)), valid("building") }),
			store.WaitForBuild, "waiting for its build"},
		{"running", run(func(d *store.JobDetail) { d.Status = "running" }), "", ""},
		{"succeeded", run(func(d *store.JobDetail) { d.Status = "succeeded" }), "", ""},
		{"paused", run(func(d *store.JobDetail) {
			d.Claimable = false
			d.Pauses = []store.Pause{{Scope: store.PauseWorkspace, Target: "w1", PausedAt: at(now.Add(-time.Hour)), PausedBy: "host-a"}}
		}), store.WaitPaused, "paused: workspace w1 since 2025-03-04T09:00:00Z by host-a"},
		{"workspace at its cap", run(func(d *store.JobDetail) { d.WorkspaceRunning, d.WorkspaceMaxRunning = 2, 2 }),
			store.WaitWorkspaceCap, "workspace w1 has 2 of 2 runs running"},
		{"workspace under its cap", run(func(d *store.JobDetail) { d.WorkspaceRunning, d.WorkspaceMaxRunning = 1, 2 }),
			store.WaitClaimable, "claimable now"},
		{"the database says no", run(func(d *store.JobDetail) { d.Claimable = false }), store.WaitNotClaimable, "does not hold"},
		{"build with NULL available_at", &store.JobDetail{Kind: store.KindBuild, Status: "queued", MaxAttempts: 3, Claimable: true},
			store.WaitClaimable, "claimable now"},
		{"build in backoff", &store.JobDetail{Kind: store.KindBuild, Status: "queued", AttemptCount: 2, MaxAttempts: 3,
			AvailableAt: at(now.Add(time.Minute))}, store.WaitBackoff, "after attempt 2 of 3"},
	}
	for _, tt := range tests {
		w := tt.job.WhyNotRunning(now)
		switch {
		case tt.want == "" && w != nil:
			t.Errorf("%s: got %+v, want no answer for a job that is not queued", tt.name, w)
		case tt.want == "":
		case w == nil:
			t.Errorf("%s: got no answer, want %s", tt.name, tt.want)
		case w.Reason != tt.want || !strings.Contains(w.Message, tt.text):
			t.Errorf("%s: got %s %q, want %s containing %q", tt.name, w.Reason, w.Message, tt.want, tt.text)
		case tt.want == store.WaitBackoff && !w.Until.Equal(tt.job.AvailableAt.Time):
			t.Errorf("%s: until %v, want %v", tt.name, w.Until, tt.job.AvailableAt.Time)
		}
	}
}

// TestInspectAgreesWithClaim: for queued runs in each situation, Inspect
// reads the row, and WhyNotRunning says "claimable" for exactly the runs the
// claim statement takes.
func TestInspectAgreesWithClaim(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// The claim compares with the database's clock: the rows are placed
		// around now.
		now := time.Now().UTC()
		ready, building, failed := e.build(t, "ready"), e.build(t, "building"), e.build(t, "failed")
		doc := e.doc(t)
		want := map[string]store.WaitReason{
			e.runFor(t, doc, ready, now.Add(-time.Hour), now.Add(-time.Minute)): store.WaitClaimable,
			e.run(t, building, now.Add(-time.Hour), now.Add(-time.Minute)):      store.WaitForBuild,
			e.run(t, failed, now.Add(-time.Hour), now.Add(-time.Minute)):        store.WaitBuildFailed,
			e.run(t, ready, now.Add(-time.Hour), now.Add(time.Minute)):          store.WaitBackoff,
			e.run(t, store.NewID(), now.Add(-time.Hour), now.Add(-time.Minute)): store.WaitBuildMissing,
			e.run(t, ready, now.Add(-2*time.Hour), now.Add(-2*time.Minute)):     store.WaitAttemptsUsedUp,
		}
		var claimable []string
		for id, reason := range want {
			if reason == store.WaitAttemptsUsedUp {
				e.exec(t, `UPDATE runs SET attempt_count = 3, error_message = 'boom' WHERE id = ?`, id)
			}
			d, err := e.s.Inspect(ctx, id)
			if err != nil {
				t.Fatalf("inspect %s: %v", id, err)
			}
			if d.Kind != store.KindRun || d.ID != id || d.Status != "queued" || d.MaxAttempts != 3 || !d.CreatedAt.Valid {
				t.Errorf("inspect %s = %+v", id, d)
			}
			if got := d.WhyNotRunning(now); got == nil || got.Reason != reason {
				t.Errorf("run %s: why = %+v, want %s", id, got, reason)
			}
			if reason == store.WaitClaimable {
				claimable = append(claimable, id)
				if d.DocumentFilename.String != "in.xlsx" || d.BuildStatus.String != "ready" {
					t.Errorf("inspect %s: document %v, build status %v", id, d.DocumentFilename, d.BuildStatus)
				}
			}
			if reason == store.WaitAttemptsUsedUp && (d.AttemptCount != 3 || d.ErrorMessage.String != "boom") {
				t.Errorf("inspect %s: attempts %d, error %v", id, d.AttemptCount, d.ErrorMessage)
			}
		}
		claimed, err := e.s.ClaimRuns(ctx, "w1", time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(claimed) != len(claimable) || claimed[0].ID != claimable[0] {
			t.Errorf("claimed %+v, want exactly %v", claimed, claimable)
		}
	})
}

func TestInspectBuildAndUnknown(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		b := e.build(t, "queued")
		e.exec(t, `UPDATE builds SET available_at = NULL WHERE id = ?`, b) // as the ADE API inserts builds
		d, err := e.s.Inspect(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if d.Kind != store.KindBuild || d.ConfigurationID != e.cfg || !d.Fingerprint.Valid || d.AvailableAt.Valid {
			t.Errorf("inspect build = %+v", d)
		}
		if w := d.WhyNotRunning(t0); w == nil || w.Reason != store.WaitClaimable {
			t.Errorf("queued build: why = %+v, want claimable", w)
		}
		if _, err := e.s.Inspect(ctx, "no-such-id"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("inspect unknown id: err = %v, want ErrNotFound", err)
		}
	})
}

package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

func TestNextAvailable(t *testing.T) {
	t.Parallel()
	type job struct {
		kind   store.Kind
		status string
		avail  time.Duration // from now
	}
	cases := []struct {
		name   string
		jobs   []job
		want   time.Duration
		wantOK bool
	}{
		{name: "nothing queued"},
		{name: "only claimable now", jobs: []job{{store.KindRun, "queued", -time.Minute}, {store.KindRun, "queued", -time.Millisecond}, {store.KindBuild, "queued", -time.Second}}},
		{name: "future jobs not queued", jobs: []job{{store.KindRun, "running", time.Minute}, {store.KindRun, "failed", time.Minute},
			{store.KindBuild, "building", time.Minute}, {store.KindBuild, "ready", time.Minute}}},
		{name: "soonest run", wantOK: true, want: 2*time.Minute + 500*time.Millisecond, jobs: []job{
			{store.KindRun, "queued", 5 * time.Minute}, {store.KindRun, "queued", 2*time.Minute + 500*time.Millisecond},
			{store.KindRun, "queued", -time.Minute}, {store.KindBuild, "queued", 3 * time.Minute}}},
		{name: "soonest build", wantOK: true, want: 30 * time.Second, jobs: []job{
			{store.KindRun, "queued", 5 * time.Minute}, {store.KindBuild, "queued", 30 * time.Second}, {store.KindRun, "running", time.Millisecond}}},
		{name: "only builds", wantOK: true, want: time.Hour, jobs: []job{{store.KindBuild, "queued", time.Hour}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachEnv(t, func(t *testing.T, e *env) {
				// available_at is compared with the database's clock.
				now := time.Now()
				for _, j := range tc.jobs {
					if j.kind == store.KindRun {
						id := e.run(t, "", t0.Add(-time.Hour), now.Add(j.avail))
						e.exec(t, `UPDATE runs SET status = ? WHERE id = ?`, j.status, id)
					} else {
						id := e.build(t, j.status)
						e.exec(t, `UPDATE builds SET available_at = ? WHERE id = ?`, e.ts(now.Add(j.avail)), id)
					}
				}
				got, ok, err := e.s.NextAvailable(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				// SQLite's clock and the times it stores have millisecond
				// steps: each truncation may take up to 1 ms off either side.
				if ok != tc.wantOK || (ok && (got > tc.want+2*time.Millisecond || got < tc.want-clockSlack)) {
					t.Errorf("NextAvailable = %v, %v; want about %v, %v", got, ok, tc.want, tc.wantOK)
				}
			})
		})
	}
}

func TestEnqueueBuild(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		otherCfg := store.NewID()
		if err := e.s.InsertConfiguration(ctx, store.NewConfiguration{ID: otherCfg, WorkspaceID: e.ws, DisplayName: "other"}, t0); err != nil {
			t.Fatal(err)
		}
		nb := func(cfg, fp string) store.NewBuild {
			return store.NewBuild{WorkspaceID: e.ws, ConfigurationID: cfg, Fingerprint: fp, EngineSpec: "ade-engine==1", MaxAttempts: 3}
		}
		first, created, err := e.s.EnqueueBuild(ctx, nb(e.cfg, "fp1"), t0)
		if err != nil || !created {
			t.Fatalf("first enqueue: %v created=%v", err, created)
		}
		cases := []struct {
			name        string
			status      string // set on the first build before enqueueing again
			build       store.NewBuild
			wantSame    bool
			wantStatus  store.Status // of the first build afterwards
			wantRequeue bool
		}{
			{name: "same pair while queued", status: "queued", build: nb(e.cfg, "fp1"), wantSame: true, wantStatus: "queued"},
			{name: "same pair while building", status: "building", build: nb(e.cfg, "fp1"), wantSame: true, wantStatus: "building"},
			{name: "same pair when ready", status: "ready", build: nb(e.cfg, "fp1"), wantSame: true, wantStatus: "ready"},
			{name: "same pair when failed", status: "failed", build: nb(e.cfg, "fp1"), wantSame: true, wantStatus: "queued", wantRequeue: true},
			{name: "same pair when cancelled", status: "cancelled", build: nb(e.cfg, "fp1"), wantSame: true, wantStatus: "queued", wantRequeue: true},
			{name: "other fingerprint", status: "ready", build: nb(e.cfg, "fp2"), wantStatus: "ready"},
			{name: "other configuration", status: "ready", build: nb(otherCfg, "fp1"), wantStatus: "ready"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e.exec(t, `UPDATE builds SET status = ?, attempt_count = 2, error_message = 'boom', exit_code = 1,
					claimed_by = 'w', claim_expires_at = ?, started_at = ?, finished_at = ? WHERE id = ?`,
					tc.status, e.ts(t0), e.ts(t0), e.ts(t0), first)
				before := e.buildRow(t, first)
				now := t0.Add(time.Duration(i+1) * time.Minute)
				id, created, err := e.s.EnqueueBuild(ctx, tc.build, now)
				if err != nil {
					t.Fatal(err)
				}
				if (id == first) != tc.wantSame || created == tc.wantSame {
					t.Fatalf("EnqueueBuild = %s created=%v; first build %s, want same %v", id, created, first, tc.wantSame)
				}
				r := e.buildRow(t, first)
				if r.Status != tc.wantStatus {
					t.Errorf("first build status = %s, want %s", r.Status, tc.wantStatus)
				}
				if !tc.wantRequeue {
					if r != before {
						t.Errorf("first build changed:\nbefore %+v\nafter  %+v", before, r)
					}
				} else {
					if r.AttemptCount != 0 || r.ErrorMessage.Valid || r.ExitCode.Valid || r.ClaimedBy.Valid ||
						r.ClaimExpiresAt.Valid || r.StartedAt.Valid || r.FinishedAt.Valid {
						t.Errorf("re-queued build not reset: %+v", r)
					}
					sameTime(t, "available_at", r.AvailableAt, now)
					got, err := e.s.ClaimBuilds(ctx, "w2", time.Minute, 10)
					if err != nil || len(got) != 1 || got[0].ID != first {
						t.Errorf("claim of the re-queued build: %+v %v", got, err)
					}
				}
				if !tc.wantSame {
					nr := e.buildRow(t, id)
					if nr.Status != "queued" || nr.AttemptCount != 0 || nr.MaxAttempts != 3 {
						t.Errorf("new build: %+v", nr)
					}
					sameTime(t, "available_at", nr.AvailableAt, now)
				}
			})
		}
		var n int
		e.scan(t, &n, `SELECT COUNT(*) FROM builds`)
		if n != 3 {
			t.Errorf("%d builds, want 3", n)
		}
	})
}

func TestEnqueueRunPicksBuild(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		old := e.buildAt(t, "ready", t0.Add(-3*time.Hour))
		e.buildAt(t, "failed", t0.Add(-time.Minute)) // newest, but failed
		mid := e.buildAt(t, "queued", t0.Add(-2*time.Hour))

		cases := []struct {
			name, buildID, want string
		}{
			{"given", old, old},
			{"newest not failed", "", mid},
		}
		for _, tc := range cases {
			id, err := e.s.EnqueueRun(ctx, store.NewRun{WorkspaceID: e.ws, ConfigurationID: e.cfg, DocumentID: store.NewID(),
				BuildID: tc.buildID, MaxAttempts: 2, InputSheetNames: []string{"S1"}, RunOptions: []byte(`{"dry_run":true}`)}, t0)
			if err != nil {
				t.Fatal(err)
			}
			r, err := e.s.GetRun(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if r.BuildID.String != tc.want || r.Status != "queued" || r.MaxAttempts != 2 || r.InputSheetNames.String != `["S1"]` {
				t.Errorf("%s: run %+v, want build %s", tc.name, r, tc.want)
			}
		}
	})
}

package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// The ADE API (and SQLite's CURRENT_TIMESTAMP) write naive text without a
// fraction; the worker writes six fractional digits. Both must compare in
// time order.
func TestSQLiteNaiveTimestamps(t *testing.T) {
	t.Parallel()
	const naive = "2006-01-02 15:04:05"
	// The database's clock decides: times are relative to the real now.
	now := time.Now().UTC()
	cases := []struct {
		name      string
		available string
		claimable bool
	}{
		{"an hour ago", now.Add(-time.Hour).Format(naive), true},
		{"a second ago", now.Add(-time.Second).Format(naive), true},
		{"same second, no fraction", now.Format(naive), true},
		{"half a minute ahead", now.Add(30 * time.Second).Format(naive), false},
		{"an hour ahead", now.Add(time.Hour).Format(naive), false},
		{"tomorrow", now.Add(24 * time.Hour).Format(naive), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "sqlite")
			ctx := context.Background()
			id := store.NewID()
			created := now.Add(-2 * time.Hour).Format(naive)
			e.exec(t, `INSERT INTO runs (id, configuration_id, workspace_id, input_document_id, status, created_at,
				available_at, attempt_count, max_attempts)
				VALUES ('`+id+`', '`+e.cfg+`', '`+e.ws+`', 'doc', 'queued', '`+created+`', '`+tc.available+`', 0, 3)`)
			var stored string
			e.scan(t, &stored, `SELECT CAST(available_at AS TEXT) FROM runs WHERE id = ?`, id)
			if stored != tc.available {
				t.Fatalf("stored available_at %q, want the raw text %q", stored, tc.available)
			}

			next, ok, err := e.s.NextAvailable(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok == tc.claimable {
				t.Errorf("NextAvailable = %v, %v; want ok=%v", next, ok, !tc.claimable)
			}
			if ok {
				at, _ := time.Parse(naive, tc.available)
				if want := time.Until(at); next > want+clockSlack || next < want-clockSlack {
					t.Errorf("NextAvailable = %v, want about %v", next, want)
				}
			}

			got, err := e.s.ClaimRuns(ctx, "w", time.Minute, 5)
			if err != nil {
				t.Fatal(err)
			}
			if (len(got) == 1) != tc.claimable {
				t.Fatalf("claimed %+v, want claimable %v", got, tc.claimable)
			}
			if tc.claimable {
				want, _ := time.Parse(naive, tc.available)
				if !got[0].AvailableAt.Time.Equal(want) || !got[0].CreatedAt.Valid {
					t.Errorf("claim read available_at %v, created_at %v", got[0].AvailableAt, got[0].CreatedAt)
				}
			}
			r, err := e.s.GetRun(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]store.Status{true: store.StatusRunning, false: store.StatusQueued}[tc.claimable]; r.Status != want {
				t.Errorf("status = %s, want %s", r.Status, want)
			}
		})
	}
}

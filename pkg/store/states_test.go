package store_test

import (
	"testing"

	"github.com/ade-org/ade-worker/pkg/store"
)

func TestStates(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind                      store.Kind
		active, succeeded, failed store.Status
	}{
		{store.KindRun, "running", "succeeded", "failed"},
		{store.KindBuild, "building", "ready", "failed"},
	} {
		if got := store.ActiveStatus(tt.kind); got != tt.active {
			t.Errorf("ActiveStatus(%s) = %s, want %s", tt.kind, got, tt.active)
		}
		if got := store.EndStatus(tt.kind, true); got != tt.succeeded {
			t.Errorf("EndStatus(%s, true) = %s, want %s", tt.kind, got, tt.succeeded)
		}
		if got := store.EndStatus(tt.kind, false); got != tt.failed {
			t.Errorf("EndStatus(%s, false) = %s, want %s", tt.kind, got, tt.failed)
		}
	}
	final := map[store.Status]bool{store.StatusQueued: false, store.StatusRunning: false, store.StatusBuilding: false,
		store.StatusSucceeded: true, store.StatusReady: true, store.StatusFailed: true, store.StatusCancelled: true}
	for s, want := range final {
		if s.Final() != want {
			t.Errorf("%s.Final() = %v, want %v", s, !want, want)
		}
	}
}

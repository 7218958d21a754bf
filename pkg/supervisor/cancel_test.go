package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/store"
)

// TestDecideCancelWins: a child stopped for a cancel ends as cancelled
// whatever it printed, and only then; a shutdown still hands back.
func TestDecideCancelWins(t *testing.T) {
	f := store.Fence{Kind: store.KindRun, ID: "r", Worker: "w", Attempt: 1}
	ok := &jobspec.Result{Status: jobspec.StatusSucceeded}
	stopped := &jobspec.Result{Status: jobspec.StatusFailed, Reason: jobspec.ReasonCancelled, Retryable: true}
	cases := []struct {
		name string
		out  childOutcome
		want ending
	}{
		{"cancelled, no result", childOutcome{cancelled: true}, ending{event: store.EventCancel}},
		{"cancelled, jobrunner reported the stop", childOutcome{cancelled: true, result: stopped}, ending{event: store.EventCancel}},
		{"cancelled just as it succeeded", childOutcome{cancelled: true, result: ok}, ending{event: store.EventCancel}},
		{"shutdown", childOutcome{stopped: true, result: stopped}, ending{event: store.EventHandBack, message: "Worker shut down; job handed back"}},
	}
	s := &Supervisor{}
	for _, tc := range cases {
		got := s.decide(f, 3, tc.out)
		if got.event != tc.want.event || got.code != nil {
			t.Errorf("%s: decide = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestLeaseCancel: a cancel stops the running child once, a child started
// after the cancel is stopped at once, and a released child is left alone.
func TestLeaseCancel(t *testing.T) {
	l := newLease(store.Fence{Kind: store.KindRun, ID: "r"}, time.Minute, time.Now())
	stops := 0
	release := l.watchCancel(func() { stops++ })
	if l.cancelRequested() || stops != 0 {
		t.Fatalf("fresh lease: cancelled %v, stops %d", l.cancelRequested(), stops)
	}
	if !l.requestCancel() || stops != 1 || !l.cancelRequested() {
		t.Errorf("first cancel: stops %d, cancelled %v; want the child stopped", stops, l.cancelRequested())
	}
	if l.requestCancel() {
		t.Errorf("second cancel reported as the first")
	}
	release()
	l.requestCancel()
	if stops != 2 {
		// the second request still reached the child; the one after release did not
		t.Errorf("stops = %d, want 2 (none after release)", stops)
	}
	late := 0
	l.watchCancel(func() { late++ })()
	if late != 1 {
		t.Errorf("a child watched after the cancel was stopped %d times, want at once", late)
	}
}

// TestLeaseSet: the held jobs are found by kind and id.
func TestLeaseSet(t *testing.T) {
	var r leaseSet
	run := newLease(store.Fence{Kind: store.KindRun, ID: "x"}, time.Minute, time.Now())
	build := newLease(store.Fence{Kind: store.KindBuild, ID: "x"}, time.Minute, time.Now())
	r.add(run)
	r.add(build)
	if l, ok := r.get(store.JobRef{Kind: store.KindBuild, ID: "x"}); !ok || l != build {
		t.Errorf("get build x = %v, %v", l, ok)
	}
	again := newLease(store.Fence{Kind: store.KindBuild, ID: "x", Attempt: 2}, time.Minute, time.Now())
	r.add(again) // claimed again while the lost attempt's goroutine ends
	r.remove(build)
	if l, ok := r.get(store.JobRef{Kind: store.KindBuild, ID: "x"}); !ok || l != again {
		t.Errorf("after the old attempt ended, get build x = %v, %v; want the new claim", l, ok)
	}
	r.remove(run)
	if _, ok := r.get(store.JobRef{Kind: store.KindRun, ID: "x"}); ok {
		t.Errorf("removed run still found")
	}
	if refs := r.refs(); len(refs) != 1 || refs[0] != (store.JobRef{Kind: store.KindBuild, ID: "x"}) {
		t.Errorf("refs = %v", refs)
	}
}

// TestTreeKiller: a jobrunner-like process that ignores SIGTERM, and its
// child that does too, are both killed. The parent outlives its child (the
// exec after wait): a parent that exits by itself once its child is killed
// would race the kill and sometimes end with status 0.
func TestTreeKiller(t *testing.T) {
	// The shell outlives its child (it execs a new sleep in its own pid, so
	// nothing is orphaned), so it is still there for the SIGKILL that follows
	// its descendants'.
	cmd := exec.Command("sh", "-c", `trap '' TERM; sleep 60 & echo $!; wait; exec sleep 60`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var k treeKiller
	k.started(cmd.Process.Pid)
	var child int
	if _, err := fmt.Fscan(out, &child); err != nil {
		t.Fatal(err)
	}
	k.kill()
	if err := cmd.Wait(); err == nil {
		t.Errorf("the parent exited cleanly; want it killed")
	}
	k.exited()
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(child, 0) == nil; time.Sleep(10 * time.Millisecond) {
		if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child)); strings.Contains(string(stat), ") Z ") {
			break // killed, waiting for its reaper
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("child %d still alive after kill", child)
		}
	}
	k.kill() // after exit: a no-op, whatever now has that pid
}

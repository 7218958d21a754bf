package e2e

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestGoMaxProcsFollowsSlots: the supervisor runs its Go code on one
// thread per eight job slots (never more than Go's default), unless
// GOMAXPROCS says otherwise, and says so in its "supervisor started" line.
func TestGoMaxProcsFollowsSlots(t *testing.T) {
	t.Parallel()
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		t.Skip("GOMAXPROCS is set for the tests: the default cannot be seen")
	}
	def := runtime.GOMAXPROCS(0) // a child's default: same machine, same cgroup
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"two slots", map[string]string{"ADE_WORKER_CONCURRENCY": "2"}, 1},
		{"nine slots", map[string]string{"ADE_WORKER_CONCURRENCY": "9"}, min(def, 2)},
		{"GOMAXPROCS set", map[string]string{"ADE_WORKER_CONCURRENCY": "2", "GOMAXPROCS": "3"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.env["ADE_WORKER_LOG_FORMAT"] = "json"
			w := newWorld(t, "sqlite", tc.env)
			w.stop(w.startAndWaitForStartedLine())
			var started string
			for _, line := range strings.Split(w.supervisorLog(0), "\n") {
				if strings.Contains(line, "supervisor started") {
					started = line
				}
			}
			if want := fmt.Sprintf(`"gomaxprocs":%d,`, tc.want); !strings.Contains(started, want) {
				t.Errorf("started line %q lacks %s", started, want)
			}
		})
	}
}

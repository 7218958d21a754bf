package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJobrunnerServesJobAfterJob: a jobrunner process serves job after job
// (ADE_WORKER_JOBRUNNER_JOBS of them) and then a fresh one takes over. With
// one slot and a share of 3, seven runs are served by three jobrunners (3,
// 3 and 1 runs), every run succeeds, and once the supervisor has stopped
// none of them is left.
func TestJobrunnerServesJobAfterJob(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_CONCURRENCY": "1", "ADE_WORKER_JOBRUNNER_JOBS": "3"})
		var runs []string
		for i := range 7 {
			runs = append(runs, w.addRun(cfg, w.addDocument(fmt.Sprintf("doc-%d.csv", i), csv("record-parent"))))
		}
		rows := w.waitForStatus("runs", runs, 2*time.Minute)
		served := map[int]int{} // jobrunner pid -> runs
		for _, id := range runs {
			if r := rows[id]; r.Status != "succeeded" {
				t.Fatalf("run %s = %+v (%s), want succeeded", id, r, r.errText())
			}
			data, err := os.ReadFile(filepath.Join(w.runDir(id), "output", "parent.pid"))
			if err != nil {
				t.Fatalf("run %s: %v", id, err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatalf("run %s: parent.pid = %q", id, data)
			}
			served[pid]++
		}
		var counts []int
		for _, n := range served {
			counts = append(counts, n)
		}
		slices.Sort(counts)
		if !reflect.DeepEqual(counts, []int{1, 3, 3}) {
			t.Errorf("runs per jobrunner = %v (%v), want [1 3 3]: three served by each until the third", counts, served)
		}
		w.stopAll()
		for pid := range served {
			if p := procInfo(pid); p.comm == "jobrunner" {
				t.Errorf("jobrunner %d still runs after the supervisor stopped (%+v)", pid, p)
			}
		}
	})
}

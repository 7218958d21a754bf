package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestJobrunnerServesJobAfterJob: a jobrunner process serves job after job
// (ADE_WORKER_JOBRUNNER_JOBS of them) and then a fresh one takes over. With
// one slot and a share of 3, seven runs are served by three jobrunners (3,
// 3 and 1 runs; /metrics counts three started), every run succeeds, and
// once the supervisor has stopped none of them is left.
func TestJobrunnerServesJobAfterJob(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_CONCURRENCY": "1", "ADE_WORKER_JOBRUNNER_JOBS": "3",
			"ADE_WORKER_HTTP_ADDR": addr})
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
		if got := scrape(t, addr)["ade_worker_jobrunner_started_total"]; got != 3 {
			t.Errorf("ade_worker_jobrunner_started_total = %v, want 3", got)
		}
		w.stopAll()
		for pid := range served {
			if p := procInfo(pid); p.comm == "jobrunner" {
				t.Errorf("jobrunner %d still runs after the supervisor stopped (%+v)", pid, p)
			}
		}
	})
}

// TestIdleJobrunnerKilled: a jobrunner that dies while it waits for its
// next job (the OOM killer, an operator's kill) costs that job nothing:
// the job goes to a fresh jobrunner and succeeds at its first attempt.
func TestIdleJobrunnerKilled(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_CONCURRENCY": "1"})
		sup := w.sups[0]
		first := w.addRun(cfg, w.addDocument("first.csv", csv()))
		if r := w.waitForStatus("runs", []string{first}, time.Minute)[first]; r.Status != "succeeded" {
			t.Fatalf("first run = %+v (%s)", r, r.errText())
		}
		var idle []int
		waitUntil(t, 10*time.Second, "the idle jobrunner", func() bool {
			idle = childrenNamed(sup.Process.Pid, "jobrunner")
			return len(idle) == 1
		})
		if err := syscall.Kill(idle[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		second := w.addRun(cfg, w.addDocument("second.csv", csv("record-parent")))
		r := w.waitForStatus("runs", []string{second}, time.Minute)[second]
		if r.Status != "succeeded" || r.AttemptCount != 1 {
			t.Fatalf("run after its idle jobrunner was killed = %+v (%s), want succeeded at attempt 1", r, r.errText())
		}
		data, _ := os.ReadFile(filepath.Join(w.runDir(second), "output", "parent.pid"))
		if strings.TrimSpace(string(data)) == strconv.Itoa(idle[0]) {
			t.Errorf("the run was served by the killed jobrunner %d", idle[0])
		}
	})
}

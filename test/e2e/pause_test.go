package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestPauseAndResume: a pause stored in the database stops every
// supervisor claiming the paused work while a running job goes on; status,
// inspect, status --by-workspace and /metrics show it; resume lets it run.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_HTTP_ADDR": addr, "ADE_WORKER_JOB_LEASE_SECONDS": "2"})
		w.env["ADE_WORKER_HTTP_ADDR"] = "" // the second supervisor serves nothing
		w.start()

		slow := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=3")))
		w.waitForStatus("runs", []string{slow}, time.Minute, "running")
		w.supervisor("pause", "--workspace", w.ws)
		held := []string{w.addRun(cfg, w.addDocument("a.csv", csv())), w.addRun(cfg, w.addDocument("b.csv", csv()))}
		// The running job goes on; the paused ones wait through all of it
		// (3 s, many poll intervals of both supervisors).
		if r := w.waitForStatus("runs", []string{slow}, time.Minute)[slow]; r.Status != "succeeded" {
			t.Fatalf("the run that was running when the pause came: %+v (%s)", r, r.errText())
		}
		for _, id := range held {
			if r := w.job("runs", id); r.Status != "queued" {
				t.Errorf("paused run %s is %s, want queued", id, r.Status)
			}
		}

		host, _ := os.Hostname()
		if out := w.supervisor("status"); !strings.Contains(out, "workspace "+w.ws) || !strings.Contains(out, host) {
			t.Errorf("status does not show the pause of workspace %s by %s:\n%s", w.ws, host, out)
		}
		var st struct {
			Paused []struct{ Scope, Target, PausedBy string } `json:"paused"`
		}
		if err := json.Unmarshal([]byte(w.supervisor("status", "--json")), &st); err != nil || len(st.Paused) != 1 ||
			st.Paused[0].Scope != "workspace" || st.Paused[0].Target != w.ws {
			t.Errorf("status --json paused = %+v (%v)", st.Paused, err)
		}
		if out := w.supervisor("inspect", held[0]); !strings.Contains(out, "paused: workspace "+w.ws+" since ") ||
			!strings.Contains(out, " by "+host) {
			t.Errorf("inspect of a paused run does not say why it waits:\n%s", out)
		}
		var byWS struct {
			Workspaces []struct {
				WorkspaceID string `json:"workspace_id"`
				Queued      int    `json:"queued"`
				Claimable   int    `json:"claimable"`
			} `json:"workspaces"`
		}
		if err := json.Unmarshal([]byte(w.supervisor("status", "--workspace", w.ws, "--json")), &byWS); err != nil ||
			len(byWS.Workspaces) != 1 || byWS.Workspaces[0].Queued != 2 || byWS.Workspaces[0].Claimable != 0 {
			t.Errorf("status --workspace --json = %+v (%v), want 2 queued, 0 claimable", byWS, err)
		}
		waitMetric(t, addr, series("ade_worker_paused", "scope", "workspace"), 1)

		if _, errOut, err := w.try("pause", "--workspace", "a", "--configuration", "b"); err == nil || !strings.Contains(errOut, "not both") {
			t.Errorf("pause with both scopes: err %v, stderr %q", err, errOut)
		}
		w.supervisor("resume", "--workspace", w.ws)
		for id, r := range w.waitForStatus("runs", held, time.Minute) {
			if r.Status != "succeeded" {
				t.Errorf("run %s after resume: %+v (%s)", id, r, r.errText())
			}
		}
		if _, errOut, err := w.try("resume", "--workspace", w.ws); err == nil || !strings.Contains(errOut, "is not paused") {
			t.Errorf("resume of what is not paused: err %v, stderr %q", err, errOut)
		}
		waitMetric(t, addr, series("ade_worker_paused", "scope", "workspace"), 0)

		// Pausing everything holds back a new run the same way.
		w.supervisor("pause")
		late := w.addRun(cfg, w.addDocument("c.csv", csv()))
		if out := w.supervisor("inspect", late); !strings.Contains(out, "paused: everything since ") {
			t.Errorf("inspect under a pause of everything:\n%s", out)
		}
		w.supervisor("resume")
		if r := w.waitForStatus("runs", []string{late}, time.Minute)[late]; r.Status != "succeeded" {
			t.Errorf("run after resuming everything: %+v (%s)", r, r.errText())
		}
	})
}

// waitMetric polls /metrics until the series has the value (the gauges are
// read from the database at most every 5 s).
func waitMetric(t *testing.T, addr, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, ok := scrape(t, addr)[name]
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v), want %v", name, got, ok, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

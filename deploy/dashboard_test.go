package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		Title   string             `json:"title"`
		GridPos struct{ H, W int } `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("grafana/ade-worker.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/ade-worker.json: %v", err)
	}
	return d
}

// The panels the README promises, each with a query.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title: %q %q", d.UID, d.Title)
	}
	titles := map[string]bool{}
	for _, p := range d.Panels {
		titles[p.Title] = true
		if len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: no query or no size", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
		}
	}
	for _, want := range []string{"Queue depth by kind", "Oldest ready job's age by kind", "Claims per second",
		"Finished by outcome", "Job duration p50 / p95", "Queue wait p50 / p95", "Running vs concurrency per worker",
		"Lease expiries", "Database error ratio", "Garbage collected"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}

// Every dashboard query parses as PromQL: promtool checks them as the
// expressions of recording rules (Grafana's $__rate_interval as 5m).
func TestDashboardQueriesParse(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = "promtool"
	}
	if _, err := exec.LookPath(promtool); err != nil {
		t.Skip("promtool not installed (.ci/run installs it): dashboard queries not parsed")
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, p := range loadDashboard(t).Panels {
		for j, tg := range p.Targets {
			expr, _ := json.Marshal(strings.ReplaceAll(tg.Expr, "$__rate_interval", "5m"))
			fmt.Fprintf(&rules, "      - record: dashboard:panel%d_%d\n        expr: %s\n", i, j, expr)
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("a dashboard query does not parse: %v\n%s", err, out)
	}
}

// Package deploy_test checks the deploy kit against the real worker: it
// builds the supervisor with a plain `go build`, starts it on a fresh SQLite
// database and scrapes its /metrics. Every counter and gauge must be there
// at 0 before the first job, and every metric the Grafana dashboard and the
// Prometheus rules use must be one the worker exports.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fresh is one scrape of a supervisor that has claimed nothing, and
// startLog what it logged until then (JSON lines).
var (
	fresh    map[string]*dto.MetricFamily
	startLog string
)

func TestMain(m *testing.M) {
	families, logs, err := scrapeFreshSupervisor()
	startLog = logs
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests:", err)
		os.Exit(1)
	}
	fresh = families
	os.Exit(m.Run())
}

// scrapeFreshSupervisor builds both binaries with a plain go build (no
// -ldflags), migrates a new SQLite database, starts the supervisor, waits
// for /readyz and returns one scrape of /metrics and the log so far.
func scrapeFreshSupervisor() (map[string]*dto.MetricFamily, string, error) {
	var logs bytes.Buffer
	families, err := scrapeInto(&logs)
	return families, logs.String(), err
}

func scrapeInto(logs *bytes.Buffer) (map[string]*dto.MetricFamily, error) {
	dir, err := os.MkdirTemp("", "ade-deploy-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bin")
	// -buildvcs=auto is go build's default, spelt out against a GOFLAGS
	// that turns it off.
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", bin+"/", "../cmd/supervisor", "../cmd/jobrunner")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"ADE_DATABASE_URL=sqlite:///"+filepath.Join(dir, "ade.sqlite"),
		"ADE_WORKSPACES_DIR="+filepath.Join(dir, "workspaces"),
		"ADE_VENVS_DIR="+filepath.Join(dir, "venvs"),
		"ADE_PIP_CACHE_DIR="+filepath.Join(dir, "pip"),
		"ADE_ENGINE_SPEC="+filepath.Join(dir, "engine"),
		"ADE_WORKER_HTTP_ADDR="+addr,
		"ADE_WORKER_CONCURRENCY=2",
	)
	migrate := exec.Command(filepath.Join(bin, "supervisor"), "migrate")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("supervisor migrate: %v\n%s", err, out)
	}
	sup := exec.Command(filepath.Join(bin, "supervisor"))
	sup.Env, sup.Stderr = env, logs
	if err := sup.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = sup.Process.Kill(); _ = sup.Wait() }()
	if err := waitReady("http://"+addr+"/readyz", time.Minute); err != nil {
		return nil, fmt.Errorf("%v\nsupervisor log:\n%s", err, logs.String())
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls url until it answers 200.
func waitReady(url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %s (last: %v)", url, within, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// notZero are the worker's series that hold a value from the start.
var notZero = map[string]bool{
	"ade_worker_build_info":          true, // always 1
	"ade_worker_concurrency":         true, // the setting
	"ade_worker_ready":               true, // 1: the test waited for /readyz
	"ade_worker_wakeups_up":          true, // 1 on a healthy worker
	"ade_worker_db_operations_total": true, // probes and claims ran already
	"ade_worker_sandbox_enforced":    true, // 1 per rule this kernel enforces
}

func TestFreshSupervisorShowsEveryCounterAndGaugeAtZero(t *testing.T) {
	want := []string{
		"ade_worker_job_claimed_total", "ade_worker_job_finished_total", "ade_worker_job_running",
		"ade_worker_lease_expired_total", "ade_worker_db_errors_total", "ade_worker_db_operations_total",
		"ade_worker_gc_removed_total", "ade_worker_queue_jobs", "ade_worker_queue_oldest_ready_age_seconds",
		"ade_worker_wakeups_up", "ade_worker_ready", "ade_worker_concurrency", "ade_worker_build_info",
		"ade_worker_sandbox_enforced", "ade_worker_jobrunner_started_total",
	}
	for _, name := range want {
		if _, ok := fresh[name]; !ok {
			t.Errorf("%s is missing from a fresh supervisor's /metrics", name)
		}
	}
	for name, f := range fresh {
		if !strings.HasPrefix(name, "ade_worker_") || notZero[name] {
			continue
		}
		if f.GetType() != dto.MetricType_COUNTER && f.GetType() != dto.MetricType_GAUGE {
			continue
		}
		if len(f.GetMetric()) == 0 {
			t.Errorf("%s has no series: a dashboard would show no data instead of 0", name)
		}
		for _, m := range f.GetMetric() {
			if v := value(m); v != 0 {
				t.Errorf("%s%v = %v on a fresh supervisor, want 0", name, m.GetLabel(), v)
			}
		}
	}
	for name, want := range map[string]float64{"ade_worker_ready": 1, "ade_worker_concurrency": 2} {
		if f := fresh[name]; f == nil || value(f.GetMetric()[0]) != want {
			t.Errorf("%s = %v, want %v", name, f, want)
		}
	}
}

// A plain go build names its commit, not "dev" (Go stamps VCS information).
func TestPlainBuildHasAVersion(t *testing.T) {
	// Go stamps only a checkout whose .git is a directory: a git worktree
	// (.git is a file) builds without VCS information.
	if st, err := os.Stat("../.git"); err != nil || !st.IsDir() {
		t.Skip("../.git is not a directory (a git worktree or no checkout): go build records no VCS information here")
	}
	f := fresh["ade_worker_build_info"]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("ade_worker_build_info: %v", f)
	}
	for _, l := range f.GetMetric()[0].GetLabel() {
		if l.GetName() == "version" && (l.GetValue() == "" || l.GetValue() == "dev") {
			t.Errorf("version=%q from a plain go build in a checkout", l.GetValue())
		}
	}
}

// metricRef is a name the worker could export, as written in PromQL.
var metricRef = regexp.MustCompile(`\bade_worker_[a-z0-9_]+`)

func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	for _, file := range []string{"grafana/ade-worker.json", "prometheus/alerts.yaml", "prometheus/alerts_test.yaml",
		"kubernetes/prometheusrule.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		refs := metricRef.FindAllString(string(data), -1)
		if len(refs) == 0 {
			t.Errorf("%s uses no ade_worker_ metric", file)
		}
		for _, ref := range slices.Compact(slices.Sorted(slices.Values(refs))) {
			if !exported(ref) {
				t.Errorf("%s uses %s, which the worker does not export", file, ref)
			}
		}
	}
}

// exported: name is a family of the scrape, or a histogram's series.
func exported(name string) bool {
	if _, ok := fresh[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := fresh[strings.TrimSuffix(name, suffix)]; ok && f.GetType() == dto.MetricType_HISTOGRAM && strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// The supervisor logs its worst-case shutdown at start, so an operator can
// size a platform's grace period from the log: 30 s grace + 5 s kill grace +
// 15 s lease with the defaults.
func TestStartLogNamesWorstCaseShutdown(t *testing.T) {
	for _, line := range strings.Split(startLog, "\n") {
		var entry struct {
			Message string   `json:"message"`
			Worst   *float64 `json:"worst_case_shutdown_seconds"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Message != "supervisor started" {
			continue
		}
		if entry.Worst == nil || *entry.Worst != 50 {
			t.Errorf("supervisor started: worst_case_shutdown_seconds %v, want 50: %s", entry.Worst, line)
		}
		return
	}
	t.Errorf("no \"supervisor started\" line in:\n%s", startLog)
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

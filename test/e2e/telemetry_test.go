package e2e

// Health and metrics (issue 9): /livez, /readyz, /metrics and
// `supervisor health`, checked against the database and real outages.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/test/pgtemp"
)

// freeAddr returns a local address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// httpGet returns the status code and body of url; code 0 when it does not
// answer.
func httpGet(url string) (int, string) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readiness is the /readyz body.
type readiness struct {
	Ready      bool     `json:"ready"`
	Failing    []string `json:"failing"`
	Conditions []struct {
		Name   string `json:"name"`
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	} `json:"conditions"`
}

func readyz(t *testing.T, addr string) (int, readiness) {
	t.Helper()
	code, body := httpGet("http://" + addr + "/readyz")
	var r readiness
	if code != 0 {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz answered %d with a body that is not JSON: %v\n%s", code, err, body)
		}
	}
	return code, r
}

// waitReady waits until /readyz answers want and returns its body.
func waitReady(t *testing.T, addr string, want int, timeout time.Duration) readiness {
	t.Helper()
	var (
		code int
		r    readiness
	)
	waitUntil(t, timeout, fmt.Sprintf("/readyz to answer %d", want), func() bool {
		code, r = readyz(t, addr)
		return code == want
	})
	return r
}

// scrape reads /metrics into "name{labels}" -> value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	code, body := httpGet("http://" + addr + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", code, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// series names one series as the text format writes it: labels sorted by name.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var pairs []string
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+`="`+labels[i+1]+`"`)
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// healthCmd runs `supervisor health` and returns its exit code and output.
func (w *world) healthCmd(env ...string) (int, string) {
	w.t.Helper()
	cmd := exec.Command(binDir+"/supervisor", "health")
	cmd.Env = append(w.environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	w.t.Fatalf("supervisor health: %v", err)
	return -1, ""
}

// TestMetricsMatchDatabase runs a known workload (3 runs that succeed, one
// that fails, one that crashes, is retried and fails) and checks /metrics
// against the rows, and the queue gauges while jobs wait.
func TestMetricsMatchDatabase(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w, cfg, build := worldWithBuild(t, backend, map[string]string{"ADE_WORKER_HTTP_ADDR": addr, "ADE_WORKER_JOB_MAX_ATTEMPTS": "2"})
		// A run in backoff for an hour: the delayed gauge counts it.
		delayed := w.addRun(cfg, w.addDocument("later.csv", csv()))
		w.exec(`UPDATE runs SET available_at = ? WHERE id = ?`, w.ts(time.Now().Add(time.Hour)), delayed)
		w.start()
		if b := w.waitForStatus("builds", []string{build}, 3*time.Minute)[build]; b.Status != "ready" {
			t.Fatalf("build = %+v (%s), want ready", b, b.errText())
		}

		// Two slow runs fill both slots; the third waits, ready.
		slow := []string{w.addRun(cfg, w.addDocument("s1.csv", csv("sleep=20"))), w.addRun(cfg, w.addDocument("s2.csv", csv("sleep=20")))}
		w.waitForStatus("runs", slow, time.Minute, "running")
		quick := w.addRun(cfg, w.addDocument("q.csv", csv()))
		var m map[string]float64
		waitUntil(t, time.Minute, "queue gauges: 2 runs running, 1 ready, 1 delayed", func() bool {
			m = scrape(t, addr)
			return m[series("ade_worker_queue_jobs", "kind", "run", "state", "running")] == 2 &&
				m[series("ade_worker_queue_jobs", "kind", "run", "state", "ready")] == 1 &&
				m[series("ade_worker_queue_jobs", "kind", "run", "state", "delayed")] == 1
		})
		if got := m[series("ade_worker_job_running", "kind", "run")]; got != 2 {
			t.Errorf("jobs_running{run} = %v while 2 runs run here", got)
		}
		if age := m[series("ade_worker_queue_oldest_ready_age_seconds", "kind", "run")]; age <= 0 || age > 120 {
			t.Errorf("oldest ready age = %v s, want a few seconds", age)
		}

		failing := w.addRun(cfg, w.addDocument("fail.csv", csv("exit=7")))
		crash := w.addRun(cfg, w.addDocument("crash.csv", csv("crash")))
		all := append(slow, quick, failing, crash)
		w.waitForStatus("runs", all, 3*time.Minute)
		checkFinishedMetrics(t, w, addr, all)
	})
}

// A run queued behind its build waits for the build apart from the queue:
// ade_worker_job_build_wait_seconds holds the build's time, and
// ade_worker_job_wait_seconds (queue wait, "from claimable") does not.
func TestMetricsSeparateBuildWait(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w, cfg, build := worldWithBuild(t, backend, map[string]string{"ADE_WORKER_HTTP_ADDR": addr})
		run := w.addRun(cfg, w.addDocument("a.csv", csv()), "--build", build)
		w.start()
		if r := w.waitForStatus("runs", []string{run}, 3*time.Minute)[run]; r.Status != "succeeded" {
			t.Fatalf("run = %+v (%s), want succeeded", r, r.errText())
		}
		var rows []struct{ Seconds float64 }
		// How long the run waited for its build: queued to build ready.
		w.query(&rows, `SELECT `+secondsBetween(backend, "r.created_at", "b.finished_at")+` AS seconds
			FROM runs r JOIN builds b ON b.id = r.build_id WHERE r.id = ?`, run)
		if len(rows) != 1 || rows[0].Seconds < 0.5 {
			t.Fatalf("the run waited %+v for its build: the test needs a build that takes a while", rows)
		}
		var m map[string]float64
		waitUntil(t, 30*time.Second, "the run's claim in the metrics", func() bool {
			m = scrape(t, addr)
			return m[series("ade_worker_job_wait_seconds_count", "kind", "run")] == 1
		})
		buildWait := m["ade_worker_job_build_wait_seconds_sum"]
		wait := m[series("ade_worker_job_wait_seconds_sum", "kind", "run")]
		t.Logf("build took %.2f s for the run; build wait %.2f s, queue wait %.2f s", rows[0].Seconds, buildWait, wait)
		if m["ade_worker_job_build_wait_seconds_count"] != 1 || buildWait < rows[0].Seconds-0.5 || buildWait > rows[0].Seconds+0.5 {
			t.Errorf("build wait = %v s over %v runs, want about %.2f s for 1", buildWait, m["ade_worker_job_build_wait_seconds_count"], rows[0].Seconds)
		}
		if wait >= rows[0].Seconds/2 {
			t.Errorf("queue wait = %v s includes the build's %.2f s", wait, rows[0].Seconds)
		}
	})
}

// secondsBetween is SQL for b - a in seconds, on the backend's timestamps.
func secondsBetween(backend, a, b string) string {
	if backend == "sqlite" {
		return "(julianday(" + b + ") - julianday(" + a + ")) * 86400.0"
	}
	return "EXTRACT(EPOCH FROM (" + b + " - " + a + "))"
}

// checkFinishedMetrics compares the counters with the rows of finished runs.
func checkFinishedMetrics(t *testing.T, w *world, addr string, runs []string) {
	t.Helper()
	var db struct {
		Attempts  int
		Succeeded int
		Failed    int
	}
	w.query(&db, `SELECT COALESCE(SUM(attempt_count), 0) AS attempts,
		COALESCE(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), 0) AS succeeded,
		COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed FROM runs WHERE id IN ?`, runs)
	if db.Succeeded != 3 || db.Failed != 2 || db.Attempts != 6 {
		t.Fatalf("rows: %+v, want 3 succeeded, 2 failed, 6 attempts", db)
	}
	finished := func(m map[string]float64, outcome string) float64 {
		return m[series("ade_worker_job_finished_total", "kind", "run", "outcome", outcome)]
	}
	var m map[string]float64
	// The last job's goroutine records its end just after its row commits,
	// and the queue gauges are read at most every 5 s.
	waitUntil(t, 30*time.Second, "metrics to settle", func() bool {
		m = scrape(t, addr)
		return m[series("ade_worker_job_running", "kind", "run")] == 0 &&
			m[series("ade_worker_queue_jobs", "kind", "run", "state", "running")] == 0 &&
			m[series("ade_worker_queue_jobs", "kind", "run", "state", "ready")] == 0
	})
	want := map[string]float64{
		series("ade_worker_job_claimed_total", "kind", "run"):                                  float64(db.Attempts),
		series("ade_worker_job_claimed_total", "kind", "build"):                                1,
		series("ade_worker_job_finished_total", "kind", "build", "outcome", "succeeded"):       1,
		series("ade_worker_job_wait_seconds_count", "kind", "run"):                             float64(db.Attempts),
		series("ade_worker_job_duration_seconds_count", "kind", "run", "outcome", "succeeded"): float64(db.Succeeded),
		series("ade_worker_job_duration_seconds_count", "kind", "run", "outcome", "failed"):    float64(db.Failed),
		series("ade_worker_queue_jobs", "kind", "run", "state", "delayed"):                     1,
		series("ade_worker_queue_oldest_ready_age_seconds", "kind", "run"):                     0,
		series("ade_worker_concurrency"):                                                       2,
	}
	infos := 0
	for k, v := range m {
		if strings.HasPrefix(k, `ade_worker_build_info{database="`+w.backend+`",version="`) && v == 1 {
			infos++
		}
	}
	if infos != 1 {
		t.Errorf("want one ade_worker_build_info series for %s, got %d", w.backend, infos)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if got := finished(m, "succeeded"); got != float64(db.Succeeded) {
		t.Errorf("finished{succeeded} = %v, rows say %d", got, db.Succeeded)
	}
	if got := finished(m, "failed"); got != float64(db.Failed) {
		t.Errorf("finished{failed} = %v, rows say %d", got, db.Failed)
	}
	// Every attempt beyond a run's last was retried.
	if got := finished(m, "retried"); got != float64(db.Attempts-len(runs)) {
		t.Errorf("finished{retried} = %v, want %d", got, db.Attempts-len(runs))
	}
	if got := m[series("ade_worker_job_duration_seconds_sum", "kind", "run", "outcome", "succeeded")]; got < 40 {
		t.Errorf("duration sum of succeeded runs = %v s, want at least the two 20 s runs", got)
	}
}

// TestReadyzAndHealthCommand: /readyz and /livez answer 200 with every
// condition named, `supervisor health` exits 0, then 1 once the supervisor
// is gone, and refuses to guess when ADE_WORKER_HTTP_ADDR is empty.
func TestReadyzAndHealthCommand(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w := newWorld(t, backend, map[string]string{"ADE_WORKER_HTTP_ADDR": addr})
		sup := w.start()
		r := waitReady(t, addr, http.StatusOK, time.Minute)
		var names []string
		for _, c := range r.Conditions {
			names = append(names, c.Name)
			if !c.OK || c.Reason == "" {
				t.Errorf("condition %+v: want ok with a reason", c)
			}
		}
		if want := []string{"database", "draining", "jobrunner", "sandbox", "schema", "wakeups"}; strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("conditions %v, want %v", names, want)
		}
		if code, body := httpGet("http://" + addr + "/livez"); code != http.StatusOK {
			t.Errorf("/livez = %d %s, want 200", code, body)
		}
		if code, out := w.healthCmd(); code != 0 || !strings.Contains(out, `"ready": true`) {
			t.Errorf("supervisor health = exit %d:\n%s\nwant exit 0 and the body", code, out)
		}
		// Port only, as Compose sets it: the command asks 127.0.0.1.
		_, port, _ := net.SplitHostPort(addr)
		if code, out := w.healthCmd("ADE_WORKER_HTTP_ADDR=:" + port); code != 0 {
			t.Errorf("supervisor health with :%s = exit %d: %s", port, code, out)
		}
		if code, out := w.healthCmd("ADE_WORKER_HTTP_ADDR="); code != 1 || !strings.Contains(out, "ADE_WORKER_HTTP_ADDR is empty") {
			t.Errorf("supervisor health without an address = exit %d: %s; want 1 naming the variable", code, out)
		}
		// A second supervisor on the same port stops at start, naming the setting.
		if _, errOut, err := w.try(); err == nil || !strings.Contains(errOut, "ADE_WORKER_HTTP_ADDR") {
			t.Errorf("second supervisor on a busy port: err %v, stderr %q; want a failure naming ADE_WORKER_HTTP_ADDR", err, errOut)
		}
		w.stop(sup)
		if code, out := w.healthCmd(); code != 1 || !strings.Contains(out, "does not answer") {
			t.Errorf("supervisor health after the supervisor stopped = exit %d: %s; want 1", code, out)
		}
	})
}

// TestReadyzTurnsUnreadyOnSigterm: SIGTERM makes /readyz 503 (draining) at
// once, while a job still runs in the shutdown grace; /livez stays 200.
func TestReadyzTurnsUnreadyOnSigterm(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_HTTP_ADDR": addr, "ADE_WORKER_SHUTDOWN_GRACE_SECONDS": "120"})
		sup := w.sups[0]
		run := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=60")))
		w.waitForStatus("runs", []string{run}, time.Minute, "running")
		waitReady(t, addr, http.StatusOK, 30*time.Second)

		signal(t, sup, syscall.SIGTERM)
		r := waitReady(t, addr, http.StatusServiceUnavailable, 10*time.Second)
		if strings.Join(r.Failing, ",") != "draining" {
			t.Errorf("failing conditions %v, want [draining]", r.Failing)
		}
		if got := w.job("runs", run); got.Status != "running" {
			t.Errorf("run is %s when /readyz turned 503; want it still running in the grace", got.Status)
		}
		if code, body := httpGet("http://" + addr + "/livez"); code != http.StatusOK {
			t.Errorf("/livez while draining = %d %s, want 200", code, body)
		}
		if code, _ := w.healthCmd(); code != 1 {
			t.Errorf("supervisor health while draining = exit %d, want 1", code)
		}
		// A second signal ends the grace: the run is handed back.
		_ = sup.Process.Signal(syscall.SIGTERM)
		if _, err := waitExit(sup, time.Minute); err != nil {
			t.Errorf("supervisor exit after the second SIGTERM: %v", err)
		}
		if got := w.job("runs", run); got.Status != "queued" {
			t.Errorf("run after shutdown = %+v, want handed back (queued)", got)
		}
	})
}

// TestReadyzFollowsPostgresOutage puts a TCP proxy owned by the test between
// the supervisor and PostgreSQL and cuts it: /readyz turns 503 naming the
// database while /livez stays 200, and both are 200 again once it is back.
func TestReadyzFollowsPostgresOutage(t *testing.T) {
	t.Parallel()
	direct := pgtemp.ForTest(t, "ade_e2e")
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr()
	addr := freeAddr(t)
	w := newWorld(t, "postgres", map[string]string{"ADE_DATABASE_URL": u.String(), "ADE_WORKER_HTTP_ADDR": addr})
	w.start()
	waitReady(t, addr, http.StatusOK, time.Minute)

	proxy.cut()
	r := waitReady(t, addr, http.StatusServiceUnavailable, 30*time.Second)
	if !contains(r.Failing, "database") {
		t.Errorf("failing conditions %v, want database among them", r.Failing)
	}
	for _, c := range r.Conditions {
		if c.Name == "database" && c.Reason == "" {
			t.Errorf("the database condition fails without a reason")
		}
	}
	if code, body := httpGet("http://" + addr + "/livez"); code != http.StatusOK {
		t.Errorf("/livez during the outage = %d %s; want 200 (an outage must not restart workers)", code, body)
	}
	if code, _ := w.healthCmd(); code != 1 {
		t.Errorf("supervisor health during the outage = exit %d, want 1", code)
	}

	proxy.restore()
	waitReady(t, addr, http.StatusOK, time.Minute)
	if code, out := w.healthCmd(); code != 0 {
		t.Errorf("supervisor health after the outage = exit %d: %s", code, out)
	}
	m := scrape(t, addr)
	if m[series("ade_worker_db_errors_total", "op", "probe")] < 1 {
		t.Errorf("db_errors_total{op=probe} = %v after an outage, want at least 1", m[series("ade_worker_db_errors_total", "op", "probe")])
	}
}

// tcpProxy forwards connections to a target until cut: then it closes every
// connection and refuses new ones until restored.
type tcpProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() { defer close(done); p.serve() }()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.cut()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(up) {
		c.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// track registers c unless the proxy is down.
func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestMetricsLeaseLostAndExpired: a running run whose row another worker
// takes over ends here as lease_lost; when that worker's lease expires,
// cleanup re-queues the run (leases_expired_total) and it succeeds.
func TestMetricsLeaseLostAndExpired(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		addr := freeAddr(t)
		w, cfg, _ := readyWorld(t, backend, map[string]string{"ADE_WORKER_HTTP_ADDR": addr, "ADE_WORKER_JOB_LEASE_SECONDS": "3"})
		run := w.addRun(cfg, w.addDocument("slow.csv", csv("sleep=10")))
		w.waitForStatus("runs", []string{run}, time.Minute, "running")
		// A thief with a lease that runs out soon.
		w.exec(`UPDATE runs SET claimed_by = 'thief', claim_expires_at = ? WHERE id = ?`, w.ts(time.Now().Add(2*time.Second)), run)
		r := w.waitForStatus("runs", []string{run}, 2*time.Minute)[run]
		if r.Status != "succeeded" || r.AttemptCount != 2 {
			t.Fatalf("run = %+v (%s), want succeeded at attempt 2", r, r.errText())
		}
		var m map[string]float64
		waitUntil(t, 30*time.Second, "the run's end in the metrics", func() bool {
			m = scrape(t, addr)
			return m[series("ade_worker_job_running", "kind", "run")] == 0
		})
		want := map[string]float64{
			series("ade_worker_job_claimed_total", "kind", "run"):                           2,
			series("ade_worker_job_finished_total", "kind", "run", "outcome", "lease_lost"): 1,
			series("ade_worker_job_finished_total", "kind", "run", "outcome", "succeeded"):  1,
			series("ade_worker_job_finished_total", "kind", "run", "outcome", "retried"):    0,
			series("ade_worker_lease_expired_total", "action", "requeued", "kind", "run"):   1,
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
	})
}

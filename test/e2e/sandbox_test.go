package e2e

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// hostileReport is what test/hostile writes: each attempt and how it ended.
type hostileReport struct {
	Attacks map[string]attemptResult `json:"attacks"`
	Legit   map[string]attemptResult `json:"legit"`
	// Planted is what a build left for its runs to exploit.
	Planted map[string]attemptResult `json:"planted"`
	TmpDir  string                   `json:"tmpdir"`
}

type attemptResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Error  string `json:"error"`
	Errno  *int   `json:"errno"`
}

// hostileTargets is test/hostile's targets.json.
type hostileTargets struct {
	SupervisorPID  int    `json:"supervisor_pid"`
	Database       string `json:"database,omitempty"`
	DatabasePort   int    `json:"database_port"`
	IndexPort      int    `json:"index_port"`
	AbstractSocket string `json:"abstract_socket"`
	UnixSocket     string `json:"unix_socket"`
	OtherDocument  string `json:"other_document"`
	OtherOutput    string `json:"other_output"`
	OtherRunDir    string `json:"other_run_dir"`
	OtherVenvFile  string `json:"other_venv_file"`
	OtherEnginePID int    `json:"other_engine_pid"`
	SecretFile     string `json:"secret_file"`
	PipCacheRoot   string `json:"pip_cache_root"`
}

// hostilePackage copies test/hostile with targets.json into a fresh folder.
func hostilePackage(t *testing.T, targets *hostileTargets) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hostile")
	copyDir(t, filepath.Join(repoDir, "test", "hostile"), dir)
	if targets != nil {
		data, _ := json.Marshal(targets)
		if err := os.WriteFile(filepath.Join(dir, "targets.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSandboxRefusesHostilePackage runs test/hostile's attacks from a build
// and from a run of workspace B while workspace A has a finished run, a
// running engine and a ready venv, on both databases: every attack is
// refused, the legitimate work of both jobs succeeds, and A's files and
// engine, the supervisor and the database are untouched.
func TestSandboxRefusesHostilePackage(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w, cfg, build := readyWorld(t, backend, map[string]string{"ADE_WORKER_CONCURRENCY": "3"})
		victims := w.ws
		done := w.addRun(cfg, w.addDocument("victim.csv", csv()))
		if r := w.waitForStatus("runs", []string{done}, time.Minute)[done]; r.Status != "succeeded" {
			t.Fatalf("victim run = %+v (%s)", r, r.errText())
		}
		sleeper := w.addRun(cfg, w.addDocument("sleeper.csv", csv("sleep=600")))
		w.waitEngine(sleeper)
		engines := w.engineProcs(sleeper)

		targets := &hostileTargets{
			SupervisorPID: w.sups[0].Process.Pid, DatabasePort: 5432, IndexPort: 443,
			AbstractSocket: abstractListener(t),
			UnixSocket:     unixListener(t, filepath.Join(w.dir, "db.sock")),
			OtherDocument:  globOne(t, filepath.Join(w.dir, "workspaces", victims, "documents", "*")),
			OtherOutput:    globOne(t, filepath.Join(w.runDir(done), "output", "*")),
			OtherRunDir:    filepath.Join(w.runDir(done), "output"),
			OtherVenvFile:  globOne(t, filepath.Join(w.buildDir(cfg, build), ".venv", "lib", "python*", "site-packages", "ade_engine", "__init__.py")),
			OtherEnginePID: engines[0],
			SecretFile:     filepath.Join(w.dir, "secret-settings.env"),
			PipCacheRoot:   w.env["ADE_PIP_CACHE_DIR"],
		}
		if err := os.MkdirAll(targets.PipCacheRoot, 0o755); err != nil {
			t.Fatal(err)
		}
		if backend == "sqlite" {
			targets.Database = strings.TrimPrefix(w.env["ADE_DATABASE_URL"], "sqlite:///")
		}
		if err := os.WriteFile(targets.SecretFile, []byte("ADE_DATABASE_URL=postgres://ade:secret@db/ade\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		venvBefore := fileSum(t, targets.OtherVenvFile)

		w.ws = "ws-hostile-" + store.NewID()[:8]
		defer func() { w.ws = victims }()
		hcfg := w.addConfig(hostilePackage(t, targets))
		hbuild := w.addBuild(hcfg)
		if b := w.waitForStatus("builds", []string{hbuild}, 3*time.Minute)[hbuild]; b.Status != "ready" {
			t.Fatalf("hostile build = %+v (%s), want ready: its legitimate work must succeed", b, b.errText())
		}
		hvenv := filepath.Join(w.buildDir(hcfg, hbuild), ".venv")
		buildReport := readReport(t, filepath.Join(hvenv, "hostile-build-report.json"))
		assertRefused(t, "build", buildReport, 19)
		assertLegit(t, "build", buildReport, "connect_index_port")
		// The run's attacks below read the secret and the other document
		// again, with the lures of this plant in its venv.
		if r := buildReport.Planted["venv_home"]; !r.OK {
			t.Fatalf("build: planting home lines in its own pyvenv.cfg = %+v, want done (a build writes its venv)", r)
		}
		if r := buildReport.Legit["connect_index_port"]; !r.OK && (r.Errno == nil || *r.Errno != int(syscall.ECONNREFUSED)) {
			t.Errorf("build: connecting to the package index port 443 = %+v, want allowed by the sandbox (connected, or refused by the host: nothing listens)", r)
		}
		ownEngine := globOne(t, filepath.Join(hvenv, "lib", "python*", "site-packages", "ade_engine", "__init__.py"))
		ownBefore := fileSum(t, ownEngine)

		hrun := w.addRun(hcfg, w.addDocument("hostile.csv", csv()))
		if r := w.waitForStatus("runs", []string{hrun}, time.Minute)[hrun]; r.Status != "succeeded" {
			t.Fatalf("hostile run = %+v (%s), want succeeded: its legitimate work must succeed", r, r.errText())
		}
		runReport := readReport(t, filepath.Join(w.runDir(hrun), "output", "hostile-report.json"))
		assertRefused(t, "run", runReport, 23)
		assertLegit(t, "run", runReport)
		for _, rep := range []hostileReport{buildReport, runReport} {
			if path := rep.Legit["write_tmpdir"].Detail; !strings.HasPrefix(path, rep.TmpDir+"/") || rep.TmpDir == "" {
				t.Errorf("the job's temporary file %q is not in its private TMPDIR %q", path, rep.TmpDir)
			} else if _, err := os.Stat(rep.TmpDir); !os.IsNotExist(err) {
				t.Errorf("the job's TMPDIR %s is still there after the job: %v", rep.TmpDir, err)
			}
		}

		// Workspace A, the supervisor and the database are untouched.
		if fileSum(t, targets.OtherVenvFile) != venvBefore {
			t.Errorf("another workspace's venv file %s changed", targets.OtherVenvFile)
		}
		if fileSum(t, ownEngine) != ownBefore {
			t.Errorf("the hostile run changed its own venv (%s)", ownEngine)
		}
		if _, err := os.Stat(filepath.Join(targets.OtherRunDir, "hostile-was-here")); !os.IsNotExist(err) {
			t.Errorf("the hostile package wrote into another workspace's run: %v", err)
		}
		if state := procInfo(targets.SupervisorPID).state; state != "S" && state != "R" {
			t.Errorf("supervisor state %q, want running (not stopped)", state)
		}
		w.ws = victims
		if r := w.job("runs", sleeper); r.Status != "running" || r.AttemptCount != 1 || !alive(targets.OtherEnginePID) {
			t.Errorf("the other workspace's engine %d (alive %v) = %+v, want still running at attempt 1", targets.OtherEnginePID, alive(targets.OtherEnginePID), r)
		}
		w.supervisor("cancel", "run", sleeper)
	})
}

// assertRefused checks that every attack was attempted and refused by the
// kernel (EACCES, EPERM), never anything else.
func assertRefused(t *testing.T, job string, rep hostileReport, want int) {
	t.Helper()
	if len(rep.Attacks) < want {
		t.Errorf("%s: %d attacks reported, want %d: %v", job, len(rep.Attacks), want, rep.Attacks)
	}
	for name, r := range rep.Attacks {
		refused := r.Errno != nil && (*r.Errno == int(syscall.EACCES) || *r.Errno == int(syscall.EPERM))
		if r.OK || !refused {
			t.Errorf("%s: attack %s = %+v, want refused with permission denied / operation not permitted", job, name, r)
		}
	}
}

// assertLegit checks that the job's legitimate work succeeded.
func assertLegit(t *testing.T, job string, rep hostileReport, except ...string) {
	t.Helper()
	if len(rep.Legit) == 0 {
		t.Errorf("%s: no legitimate actions reported", job)
	}
	for name, r := range rep.Legit {
		if !contains(except, name) && !r.OK {
			t.Errorf("%s: legitimate %s failed: %+v", job, name, r)
		}
	}
}

func readReport(t *testing.T, path string) hostileReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("hostile report: %v", err)
	}
	var rep hostileReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("hostile report %s: %v", path, err)
	}
	return rep
}

func globOne(t *testing.T, pattern string) string {
	t.Helper()
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		t.Fatalf("nothing matches %s", pattern)
	}
	return matches[0]
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(len(data)) + ":" + string(data[max(0, len(data)-64):])
}

// abstractListener listens on an abstract UNIX socket until the test ends
// and returns its name (without the leading NUL).
func abstractListener(t *testing.T) string {
	t.Helper()
	name := "ade-e2e-" + store.NewID()[:12]
	l, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return name
}

// unixListener listens on a UNIX socket at path until the test ends and
// returns the path.
func unixListener(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return path
}

// TestSandboxEndsLeaks: a job's threads count against the process limit,
// its children's memory against the memory limit, and a daemon it detached
// dies when its jobrunner is SIGKILLed (the supervisor, a child subreaper,
// inherits and ends it), on both databases.
func TestSandboxEndsLeaks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, nil)
		cfg := w.addConfig(hostilePackage(t, nil))
		build := w.addBuild(cfg)
		w.start()
		if b := w.waitForStatus("builds", []string{build}, 3*time.Minute)[build]; b.Status != "ready" {
			t.Fatalf("build = %+v (%s)", b, b.errText())
		}
		w.stopAll()
		w.env["ADE_WORKER_JOB_MAX_PROCESSES"] = "8"
		w.env["ADE_WORKER_JOB_MEMORY_MB"] = "256"
		sup := w.start()

		hostile := func(name string, directives ...string) string {
			var b bytes.Buffer
			for _, d := range directives {
				b.WriteString("#ade-hostile: " + d + "\n")
			}
			return w.addRun(cfg, w.addDocument(name, b.String()+csv()))
		}
		threads := hostile("threads.csv", "threads=300", "hold=30")
		memory := hostile("memory.csv", "children-mb=150", "children=3", "hold=30")
		rows := w.waitForStatus("runs", []string{threads, memory}, 2*time.Minute)
		for run, want := range map[string]string{threads: "process limit of 8", memory: "memory limit of 256 MB"} {
			if r := rows[run]; r.Status != "failed" || r.AttemptCount != 1 || !strings.Contains(r.errText(), want) {
				t.Errorf("run = %+v (%s), want failed at attempt 1 naming the %s", r, r.errText(), want)
			}
		}

		daemon := hostile("daemon.csv", "daemon=1", "hold=60")
		pidFile := filepath.Join(w.runDir(daemon), "output", "daemon.pid")
		var pid int
		waitUntil(t, time.Minute, "the hostile daemon's pid file", func() bool {
			data, err := os.ReadFile(pidFile)
			pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
			return err == nil && pid > 0
		})
		// The detached daemon's parent becomes its subreaper, the jobrunner
		// serving the run (the other slot's may idle beside it), once the
		// middle process of the double fork has exited: the daemon writes
		// its pid before that.
		var runner int
		waitUntil(t, 10*time.Second, "the daemon's parent to be a jobrunner of the supervisor", func() bool {
			runner = procInfo(pid).ppid
			return slices.Contains(childrenNamed(sup.Process.Pid, "jobrunner"), runner)
		})
		if !alive(pid) {
			t.Fatalf("daemon %d died before its jobrunner was killed", pid)
		}
		if err := syscall.Kill(runner, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "the daemon of the SIGKILLed jobrunner to die", func() bool { return !alive(pid) })
	})
}

// TestSandboxModesReport: `supervisor sandbox`, the start-up log, /readyz and
// /metrics say what each ADE_WORKER_SANDBOX mode enforces on this kernel
// (Landlock ABI 6 or more: everything but under off). Under off the hostile
// package's attacks succeed, which shows the attack test would see a hole.
func TestSandboxModesReport(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		for _, mode := range []string{"required", "best-effort", "off"} {
			addr := freeAddr(t)
			w := newWorld(t, backend, map[string]string{"ADE_WORKER_SANDBOX": mode, "ADE_WORKER_HTTP_ADDR": addr})
			var doc struct {
				Mode       string `json:"mode"`
				KernelABI  int    `json:"kernel_abi"`
				WouldStart bool   `json:"would_start"`
				Rules      []struct {
					Name     string `json:"name"`
					Enforced bool   `json:"enforced"`
				} `json:"rules"`
			}
			if err := json.Unmarshal([]byte(w.supervisor("sandbox", "--json")), &doc); err != nil {
				t.Fatal(err)
			}
			text := w.supervisor("sandbox")
			if doc.Mode != mode || doc.KernelABI < 6 || !doc.WouldStart || len(doc.Rules) < 7 {
				t.Fatalf("%s: supervisor sandbox --json = %+v", mode, doc)
			}
			for _, r := range doc.Rules {
				if r.Enforced != (mode != "off") {
					t.Errorf("%s: rule %s enforced = %v", mode, r.Name, r.Enforced)
				}
			}
			if mode == "off" && !strings.Contains(text, "off") || mode != "off" && strings.Contains(text, "NOT enforced") {
				t.Errorf("%s: supervisor sandbox printed:\n%s", mode, text)
			}

			w.start()
			r := waitReady(t, addr, 200, time.Minute)
			reason := ""
			for _, c := range r.Conditions {
				if c.Name == "sandbox" {
					reason = c.Reason
				}
			}
			wantReason := mode + ": every rule enforced"
			if mode == "off" {
				wantReason = "off: not enforced: filesystem"
			}
			if !strings.HasPrefix(reason, wantReason) {
				t.Errorf("%s: /readyz sandbox condition %q, want it to start with %q", mode, reason, wantReason)
			}
			want := 1.0
			if mode == "off" {
				want = 0
			}
			for _, rule := range []string{"filesystem", "tcp", "signals"} {
				if got, ok := scrape(t, addr)[series("ade_worker_sandbox_enforced", "mode", mode, "rule", rule)]; !ok || got != want {
					t.Errorf("%s: ade_worker_sandbox_enforced{rule=%q} = %v (present %v), want %v", mode, rule, got, ok, want)
				}
			}
			if mode != "off" {
				w.stopAll()
				continue
			}
			w.stopAll()
			log, _ := os.ReadFile(filepath.Join(w.dir, "supervisor-0.log"))
			if !bytes.Contains(log, []byte("ADE_WORKER_SANDBOX=off: configuration packages run unconfined")) {
				t.Errorf("off: no warning in the supervisor's log:\n%s", log)
			}
		}
	})
}

// TestSandboxOffLetsAttacksThrough is the control of the attack test: with
// ADE_WORKER_SANDBOX=off the same package reads another tenant's secret and
// writes into another run, so the refusals seen with the sandbox on are the
// sandbox's doing.
func TestSandboxOffLetsAttacksThrough(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, backend string) {
		w := newWorld(t, backend, map[string]string{"ADE_WORKER_SANDBOX": "off"})
		secret := filepath.Join(w.dir, "secret-settings.env")
		other := filepath.Join(w.dir, "other-run")
		if err := os.MkdirAll(other, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Stand-ins for the supervisor and another tenant's engine: the
		// attacks stop, ptrace and kill them for real.
		stand, victim := sleeper(t), sleeper(t)
		w.start()
		cfg := w.addConfig(hostilePackage(t, &hostileTargets{
			SupervisorPID: stand.Process.Pid, DatabasePort: 5432, IndexPort: 443, AbstractSocket: abstractListener(t),
			OtherDocument: secret, OtherOutput: secret, OtherRunDir: other, OtherVenvFile: filepath.Join(other, "venv-file"),
			OtherEnginePID: victim.Process.Pid, SecretFile: secret,
			UnixSocket: unixListener(t, filepath.Join(w.dir, "db.sock")), PipCacheRoot: w.env["ADE_PIP_CACHE_DIR"],
		}))
		build := w.addBuild(cfg)
		if b := w.waitForStatus("builds", []string{build}, 3*time.Minute)[build]; b.Status != "ready" {
			t.Fatalf("build = %+v (%s)", b, b.errText())
		}
		run := w.addRun(cfg, w.addDocument("hostile.csv", csv()))
		if r := w.waitForStatus("runs", []string{run}, time.Minute)[run]; r.Status != "succeeded" {
			t.Fatalf("run = %+v (%s)", r, r.errText())
		}
		rep := readReport(t, filepath.Join(w.runDir(run), "output", "hostile-report.json"))
		for _, name := range []string{"read_secret", "write_other_run", "append_other_venv", "bind_tcp", "write_dev_shm",
			"connect_unix_socket", "send_udp", "symlink_in_output", "fifo_in_output", "sysv_shared_memory"} {
			if !rep.Attacks[name].OK {
				t.Errorf("off: attack %s = %+v, want it to succeed unconfined", name, rep.Attacks[name])
			}
		}
		if alive(victim.Process.Pid) {
			t.Errorf("off: the victim process %d survived the attack's SIGKILL", victim.Process.Pid)
		}
	})
}

// sleeper starts a process that sleeps until the test ends.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd
}

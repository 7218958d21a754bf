// Package e2e drives the real supervisor and jobrunner binaries against real
// SQLite files, real venvs and the test engine under test/engine.
package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/test/parallel"
	"github.com/ade-org/ade-worker/test/pgtemp"
)

var (
	binDir  string // holds the supervisor and jobrunner binaries
	repoDir string
)

func TestMain(m *testing.M) {
	flag.Parse()
	parallel.UnlessSet(4) // as scripts/test.sh runs them
	code, err := setupBinaries(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setupBinaries(m *testing.M) (int, error) {
	_, file, _, _ := runtime.Caller(0)
	repoDir = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	dir, err := os.MkdirTemp("", "ade-e2e-bin-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binDir = dir
	defer removeSharedVenv()
	defer pgtemp.DropTemplates() // the tablespace the worlds' databases were in
	// Built the way the image builds them.
	cmd := exec.Command("bash", "scripts/build-binaries.sh", dir)
	cmd.Dir = repoDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("scripts/build-binaries.sh: %v\n%s", err, out)
	}
	return m.Run(), nil
}

// eachBackend runs fn as a parallel subtest per database.
func eachBackend(t *testing.T, fn func(t *testing.T, backend string)) { pgtemp.EachBackend(t, fn) }

// newDatabase returns the URL of a fresh, empty database of the backend,
// dropped when the test ends.
func newDatabase(t *testing.T, backend, dir string) string {
	return pgtemp.URL(t, backend, filepath.Join(dir, "db", "ade.sqlite"), "ade_e2e")
}

// world is one isolated installation: a database, data folders and settings.
type world struct {
	t       *testing.T
	backend string
	dir     string
	env     map[string]string
	st      *store.Store
	ws      string
	sups    []*exec.Cmd
}

// newWorld makes a fresh database of the backend (a SQLite file under a
// fresh folder, or a PostgreSQL database) migrated by `supervisor migrate`,
// and the world's folders. extra overrides settings (ADE_* variables).
func newWorld(t *testing.T, backend string, extra map[string]string) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{t: t, backend: backend, dir: dir, ws: "ws-" + store.NewID()[:8], env: map[string]string{
		"ADE_DATABASE_URL":                    newDatabase(t, backend, dir),
		"ADE_WORKSPACES_DIR":                  filepath.Join(dir, "workspaces"),
		"ADE_VENVS_DIR":                       filepath.Join(dir, "venvs"),
		"ADE_PIP_CACHE_DIR":                   filepath.Join(dir, "pip-cache"),
		"ADE_ENGINE_SPEC":                     filepath.Join(repoDir, "test", "engine"),
		"ADE_WORKER_POLL_INTERVAL":            "0.05",
		"ADE_WORKER_POLL_INTERVAL_MAX":        "0.2",
		"ADE_WORKER_CLEANUP_INTERVAL":         "0.5",
		"ADE_WORKER_CONCURRENCY":              "2",
		"ADE_WORKER_JOB_BACKOFF_BASE_SECONDS": "0",
		"ADE_WORKER_SHUTDOWN_GRACE_SECONDS":   "5",
		"ADE_WORKER_LOG_FORMAT":               "console",
		"PIP_NO_INDEX":                        "1",
		"PIP_DISABLE_PIP_VERSION_CHECK":       "1",
	}}
	for k, v := range extra {
		w.env[k] = v
	}
	w.supervisor("migrate")
	w.st = w.open()
	t.Cleanup(w.stopAll) // before the store closes (pgtemp.Open)
	return w
}

func (w *world) open() *store.Store { return pgtemp.Open(w.t, w.env["ADE_DATABASE_URL"]) }

func (w *world) environ() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range w.env {
		env = append(env, k+"="+v)
	}
	return env
}

// supervisor runs a supervisor subcommand to completion and returns stdout.
func (w *world) supervisor(args ...string) string {
	w.t.Helper()
	out, errOut, err := w.try(args...)
	if err != nil {
		w.t.Fatalf("supervisor %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return strings.TrimSpace(out)
}

// try runs a supervisor subcommand and returns its output and error.
func (w *world) try(args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(binDir, "supervisor"), args...)
	cmd.Env = w.environ()
	cmd.Dir = w.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// start launches the worker loop in the background; its log goes to a file
// that is shown when the test fails.
func (w *world) start() *exec.Cmd {
	w.t.Helper()
	logPath := filepath.Join(w.dir, fmt.Sprintf("supervisor-%d.log", len(w.sups)))
	logFile, err := os.Create(logPath)
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "supervisor"))
	cmd.Env = w.environ()
	cmd.Dir = w.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.sups = append(w.sups, cmd)
	w.t.Cleanup(func() {
		logFile.Close()
		if w.t.Failed() {
			data, _ := os.ReadFile(logPath)
			w.t.Logf("supervisor log %s:\n%s", logPath, data)
		}
	})
	return cmd
}

// startAndWaitForStartedLine starts a supervisor and waits until its log
// says "supervisor started", which it writes once it handles SIGTERM: a
// test may stop it at once and expect a clean exit.
func (w *world) startAndWaitForStartedLine() *exec.Cmd {
	w.t.Helper()
	cmd := w.start()
	logPath := filepath.Join(w.dir, fmt.Sprintf("supervisor-%d.log", len(w.sups)-1))
	deadline := time.Now().Add(time.Minute)
	for {
		data, _ := os.ReadFile(logPath)
		if bytes.Contains(data, []byte("supervisor started")) {
			return cmd
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("supervisor did not log \"supervisor started\" within a minute:\n%s", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; it fails the test when the exit is not clean.
func (w *world) stop(cmd *exec.Cmd) {
	w.t.Helper()
	if cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			w.t.Errorf("supervisor exited with %v after SIGTERM, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		w.t.Errorf("supervisor did not stop within 30s of SIGTERM")
	}
}

func (w *world) stopAll() {
	for _, cmd := range w.sups {
		w.stop(cmd)
	}
}

// addConfig copies the sample configuration package (or dir) into the workspace.
func (w *world) addConfig(dir string) string {
	w.t.Helper()
	if dir == "" {
		dir = filepath.Join(repoDir, "test", "config")
	}
	return w.supervisor("enqueue", "configuration", "--workspace", w.ws, "--from", dir)
}

// addDocument stores a CSV document with the given content and name.
func (w *world) addDocument(name, content string) string {
	w.t.Helper()
	src := filepath.Join(w.t.TempDir(), name)
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return w.supervisor("enqueue", "document", "--workspace", w.ws, "--file", src)
}

func (w *world) addBuild(cfg string) string {
	w.t.Helper()
	return w.supervisor("enqueue", "build", "--workspace", w.ws, "--configuration", cfg)
}

func (w *world) addRun(cfg, doc string, extra ...string) string {
	w.t.Helper()
	args := append([]string{"enqueue", "run", "--workspace", w.ws, "--configuration", cfg, "--document", doc}, extra...)
	return w.supervisor(args...)
}

// query scans one row of a raw query into dest.
func (w *world) query(dest any, sql string, args ...any) {
	w.t.Helper()
	if err := w.st.TestDB().Raw(sql, args...).Scan(dest).Error; err != nil {
		w.t.Fatalf("query %q: %v", sql, err)
	}
}

// count returns the number a COUNT(*) query gives.
func (w *world) count(sql string, args ...any) int {
	w.t.Helper()
	var n int
	w.query(&n, sql, args...)
	return n
}

// ts encodes a time the way the world's database stores timestamps.
func (w *world) ts(t time.Time) any { return w.st.TestTime(t) }

func (w *world) exec(sql string, args ...any) {
	w.t.Helper()
	if err := w.st.TestDB().Exec(sql, args...).Error; err != nil {
		w.t.Fatalf("exec %q: %v", sql, err)
	}
}

// jobRow is the state of a build or run as tests check it.
type jobRow struct {
	Status       string
	ExitCode     *int
	ErrorMessage *string
	AttemptCount int
	ClaimedBy    *string
	AvailableAt  store.Time
}

func (j jobRow) errText() string {
	if j.ErrorMessage == nil {
		return ""
	}
	return *j.ErrorMessage
}

func (w *world) job(table, id string) jobRow {
	w.t.Helper()
	var r jobRow
	w.query(&r, `SELECT status, exit_code, error_message, attempt_count, claimed_by, available_at FROM `+table+` WHERE id = ?`, id)
	return r
}

// waitForStatus polls until every job reaches one of the terminal statuses
// (any terminal status when none is given) and returns the rows. It does not
// wait for the jobs' last events: the supervisor appends run.complete or
// build.complete just after the row holds the outcome, so a test that reads
// a finished job's events waits for them with readEventsEndingWith.
func (w *world) waitForStatus(table string, ids []string, timeout time.Duration, terminal ...string) map[string]jobRow {
	w.t.Helper()
	if len(terminal) == 0 {
		terminal = []string{"succeeded", "failed", "ready", "cancelled"}
	}
	rows := func() map[string]jobRow {
		rows := map[string]jobRow{}
		for _, id := range ids {
			rows[id] = w.job(table, id)
		}
		return rows
	}
	// One COUNT per poll, whatever the number of jobs.
	deadline := time.Now().Add(timeout)
	for w.count(`SELECT COUNT(*) FROM `+table+` WHERE id IN ? AND status IN ?`, ids, terminal) < len(ids) {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out after %s waiting for %s %v to reach %v; now %+v", timeout, table, ids, terminal, rows())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rows()
}

// readEventsEndingWith waits until the events file's last event is last
// (the supervisor appends run.complete or build.complete just after the
// database holds the outcome), then reads the file. It fails t when the
// event does not come within 30 s.
func readEventsEndingWith(t *testing.T, path, last string) []map[string]any {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !lastEventIs(path, last); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("%s does not end with %s after 30 s:\n%s", path, last, data)
		}
	}
	return readEvents(t, path)
}

// lastEventIs reports whether the file's last line is the event name.
func lastEventIs(path, name string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	data = bytes.TrimRight(data, "\n")
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	return bytes.Contains(data, []byte(`"event":"`+name+`"`))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runDir is where a run's files are.
func (w *world) runDir(runID string) string {
	return filepath.Join(w.dir, "workspaces", w.ws, "runs", runID)
}

// runEvents is the path of a run's events file.
func (w *world) runEvents(runID string) string {
	return filepath.Join(w.runDir(runID), "logs", "events.ndjson")
}

func (w *world) buildDir(cfg, buildID string) string {
	return filepath.Join(w.dir, "venvs", w.ws, cfg, buildID)
}

// csv builds a test document: directives first, then the CSV body.
func csv(directives ...string) string {
	var b strings.Builder
	for _, d := range directives {
		b.WriteString("#ade-test: " + d + "\n")
	}
	b.WriteString("E-mail,First Name,Last Name,Phone,Notes\nann@example.com,Ann,Lee,555-0101,\nbob.example.com,Bob,,555-0102,vip\n")
	return b.String()
}

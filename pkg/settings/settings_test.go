package settings

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// load runs a cli.App with Flags in a fresh folder, with no ADE_* variable
// set but those in env, and returns what FromCLI made of it.
func load(t *testing.T, env map[string]string, args ...string) (*Settings, error) {
	t.Helper()
	unsetEnv(t, "ADE_")
	t.Chdir(t.TempDir())
	return loadHere(t, env, args...)
}

// unsetEnv unsets, for the test, every variable whose name has prefix.
func unsetEnv(t *testing.T, prefix string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, prefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func cwd(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefaults(t *testing.T) {
	s, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := cwd(t)
	host, _ := os.Hostname()
	ws := filepath.Join(dir, "data/workspaces")
	want := Settings{
		DatabaseURL:       "sqlite:///./data/db/ade.sqlite",
		Database:          DatabaseURL{Driver: SQLite, Path: filepath.Join(dir, "data/db/ade.sqlite")},
		ListenDatabase:    DatabaseURL{Driver: SQLite, Path: filepath.Join(dir, "data/db/ade.sqlite")},
		PoolSize:          defaultConcurrency() + 2,
		SQLiteJournalMode: "WAL",
		SQLiteSynchronous: "NORMAL",
		SQLiteBusyTimeout: 30 * time.Second,
		WorkspacesDir:     ws,
		DocumentsDir:      ws,
		ConfigsDir:        ws,
		RunsDir:           ws,
		VenvsDir:          filepath.Join(dir, "data/venvs"),
		PipCacheDir:       filepath.Join(dir, "data/cache/pip"),
		EngineSpec:        "apps/ade-engine",
		Python:            s.Python, // depends on the machine; checked below
		BuildTimeout:      600 * time.Second,
		RunTimeout:        0,
		Concurrency:       defaultConcurrency(),
		JobrunnerJobs:     100,
		PollInterval:      500 * time.Millisecond,
		PollIntervalMax:   2 * time.Second,
		IdleListeners:     4,
		CleanupInterval:   30 * time.Second,
		MetricsInterval:   30 * time.Second,
		WorkerID:          s.WorkerID, // checked below: it has a random part
		LeaseSeconds:      15 * time.Second,
		MaxAttempts:       3,
		BackoffBase:       5 * time.Second,
		BackoffMax:        300 * time.Second,
		LogLevel:          "info",
		LogFormat:         "json",
		ShutdownGrace:     30 * time.Second,
		ClaimOrder:        "fair",
		GCInterval:        time.Hour,
		RunArtifactTTL:    30 * 24 * time.Hour,
		VenvTTL:           30 * 24 * time.Hour,
		Sandbox:           sandbox.Required,
		MaxHandBacks:      3,
		BuildTCPPorts:     []uint16{443, 80},
	}
	if s.Installer != "pip" && !filepath.IsAbs(s.Installer) {
		t.Errorf("Installer = %q, want pip or the path of uv", s.Installer)
	}
	want.Installer = s.Installer // depends on whether uv is on PATH
	if !regexp.MustCompile("^" + regexp.QuoteMeta(fmt.Sprintf("%s-%d-", host, os.Getpid())) + "[0-9a-f]{6}$").MatchString(s.WorkerID) {
		t.Errorf("WorkerID = %q, want <hostname>-<pid>-<6 hex digits>", s.WorkerID)
	}
	if !reflect.DeepEqual(*s, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *s, want)
	}
	if s.Python != "python3" && !filepath.IsAbs(s.Python) {
		t.Errorf("Python = %q, want an absolute path or python3", s.Python)
	}
	if c := defaultConcurrency(); c < 1 || c > 4 {
		t.Errorf("defaultConcurrency() = %d, want 1..4", c)
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		setup func(t *testing.T) // runs in the test's folder, before loading
		got   func(s *Settings) any
		want  func(dir string) any // dir is the test's folder
	}{
		{name: "absolute sqlite", env: map[string]string{"ADE_DATABASE_URL": "sqlite:////srv/ade/db.sqlite"},
			got:  func(s *Settings) any { return s.Database },
			want: func(string) any { return DatabaseURL{Driver: SQLite, Path: "/srv/ade/db.sqlite"} }},
		{name: "postgres", env: map[string]string{"ADE_DATABASE_URL": "postgresql+psycopg://u:p@db:5432/ade"},
			got:  func(s *Settings) any { return s.Database },
			want: func(string) any { return DatabaseURL{Driver: Postgres, DSN: "postgres://u:p@db:5432/ade"} }},
		{name: "listen URL defaults to the database URL", env: map[string]string{"ADE_DATABASE_URL": "postgresql://u:p@bouncer:6432/ade"},
			got:  func(s *Settings) any { return s.ListenDatabase },
			want: func(string) any { return DatabaseURL{Driver: Postgres, DSN: "postgres://u:p@bouncer:6432/ade"} }},
		{name: "listen URL", env: map[string]string{"ADE_DATABASE_URL": "postgresql://u:p@bouncer:6432/ade", "ADE_DATABASE_LISTEN_URL": "postgresql+psycopg://u:p@db:5432/ade"},
			got: func(s *Settings) any { return []DatabaseURL{s.Database, s.ListenDatabase} },
			want: func(string) any {
				return []DatabaseURL{{Driver: Postgres, DSN: "postgres://u:p@bouncer:6432/ade"}, {Driver: Postgres, DSN: "postgres://u:p@db:5432/ade"}}
			}},
		{name: "pool size follows the concurrency", env: map[string]string{"ADE_WORKER_CONCURRENCY": "6"},
			got: func(s *Settings) any { return s.PoolSize }, want: func(string) any { return 8 }},
		{name: "pool size", env: map[string]string{"ADE_WORKER_CONCURRENCY": "6", "ADE_DATABASE_POOL_SIZE": "3"},
			got: func(s *Settings) any { return s.PoolSize }, want: func(string) any { return 3 }},
		{name: "journal mode any case", env: map[string]string{"ADE_DATABASE_SQLITE_JOURNAL_MODE": "delete"},
			got: func(s *Settings) any { return s.SQLiteJournalMode }, want: func(string) any { return "DELETE" }},
		{name: "synchronous any case", env: map[string]string{"ADE_DATABASE_SQLITE_SYNCHRONOUS": "Full"},
			got: func(s *Settings) any { return s.SQLiteSynchronous }, want: func(string) any { return "FULL" }},
		{name: "busy timeout zero", env: map[string]string{"ADE_DATABASE_SQLITE_BUSY_TIMEOUT_MS": "0"},
			got: func(s *Settings) any { return s.SQLiteBusyTimeout }, want: func(string) any { return time.Duration(0) }},
		{name: "busy timeout", env: map[string]string{"ADE_DATABASE_SQLITE_BUSY_TIMEOUT_MS": "1500"},
			got: func(s *Settings) any { return s.SQLiteBusyTimeout }, want: func(string) any { return 1500 * time.Millisecond }},
		{name: "documents, configs, runs default to workspaces", env: map[string]string{"ADE_WORKSPACES_DIR": "ws"},
			got:  func(s *Settings) any { return []string{s.WorkspacesDir, s.DocumentsDir, s.ConfigsDir, s.RunsDir} },
			want: func(d string) any { w := filepath.Join(d, "ws"); return []string{w, w, w, w} }},
		{name: "own documents dir", env: map[string]string{"ADE_WORKSPACES_DIR": "/ws", "ADE_DOCUMENTS_DIR": "docs"},
			got:  func(s *Settings) any { return []string{s.DocumentsDir, s.ConfigsDir, s.RunsDir} },
			want: func(d string) any { return []string{filepath.Join(d, "docs"), "/ws", "/ws"} }},
		{name: "configs and runs dirs", env: map[string]string{"ADE_CONFIGS_DIR": "/c", "ADE_RUNS_DIR": "/r/"},
			got: func(s *Settings) any { return []string{s.ConfigsDir, s.RunsDir} }, want: func(string) any { return []string{"/c", "/r"} }},
		{name: "venvs and pip cache", env: map[string]string{"ADE_VENVS_DIR": "v", "ADE_PIP_CACHE_DIR": "/pip"},
			got:  func(s *Settings) any { return []string{s.VenvsDir, s.PipCacheDir} },
			want: func(d string) any { return []string{filepath.Join(d, "v"), "/pip"} }},
		{name: "engine spec: existing default path made absolute",
			setup: func(t *testing.T) { mkdir(t, "apps/ade-engine") },
			got:   func(s *Settings) any { return s.EngineSpec }, want: func(d string) any { return filepath.Join(d, "apps/ade-engine") }},
		{name: "engine spec: existing relative path", env: map[string]string{"ADE_ENGINE_SPEC": "./engine"},
			setup: func(t *testing.T) { mkdir(t, "engine") },
			got:   func(s *Settings) any { return s.EngineSpec }, want: func(d string) any { return filepath.Join(d, "engine") }},
		{name: "engine spec: pip requirement", env: map[string]string{"ADE_ENGINE_SPEC": "ade-engine==1.2.3"},
			got: func(s *Settings) any { return s.EngineSpec }, want: func(string) any { return "ade-engine==1.2.3" }},
		{name: "engine spec: bare name is a requirement even if a folder has its name", env: map[string]string{"ADE_ENGINE_SPEC": "ade-engine"},
			setup: func(t *testing.T) { mkdir(t, "ade-engine") },
			got:   func(s *Settings) any { return s.EngineSpec }, want: func(string) any { return "ade-engine" }},
		{name: "engine spec: URL", env: map[string]string{"ADE_ENGINE_SPEC": "git+https://example.com/ade-engine.git"},
			got: func(s *Settings) any { return s.EngineSpec }, want: func(string) any { return "git+https://example.com/ade-engine.git" }},
		{name: "python path", env: map[string]string{"ADE_PYTHON": "/opt/py/bin/python3.12"},
			got: func(s *Settings) any { return s.Python }, want: func(string) any { return "/opt/py/bin/python3.12" }},
		{name: "python not on PATH kept", env: map[string]string{"ADE_PYTHON": "no-such-python-ade"},
			got: func(s *Settings) any { return s.Python }, want: func(string) any { return "no-such-python-ade" }},
		{name: "python found on PATH", env: map[string]string{"ADE_PYTHON": "mypython"},
			setup: func(t *testing.T) {
				mkdir(t, "bin")
				if err := os.WriteFile("bin/mypython", []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				t.Setenv("PATH", filepath.Join(cwd(t), "bin"))
			},
			got: func(s *Settings) any { return s.Python }, want: func(d string) any { return filepath.Join(d, "bin/mypython") }},
		{name: "sandbox best-effort", env: map[string]string{"ADE_WORKER_SANDBOX": "Best-Effort"},
			got: func(s *Settings) any { return s.Sandbox }, want: func(string) any { return sandbox.BestEffort }},
		{name: "build ports and extra read paths", env: map[string]string{"ADE_WORKER_BUILD_TCP_PORTS": " 8443, 3128 ", "ADE_WORKER_SANDBOX_READ": "/opt/wheels/,/srv/py"},
			got:  func(s *Settings) any { return []any{s.BuildTCPPorts, s.SandboxRead} },
			want: func(string) any { return []any{[]uint16{8443, 3128}, []string{"/opt/wheels", "/srv/py"}} }},
		{name: "build ports may be none", env: map[string]string{"ADE_WORKER_BUILD_TCP_PORTS": ","},
			got: func(s *Settings) any { return s.BuildTCPPorts }, want: func(string) any { return []uint16(nil) }},
		{name: "build timeout fractional", env: map[string]string{"ADE_BUILD_TIMEOUT": "1.5"},
			got: func(s *Settings) any { return s.BuildTimeout }, want: func(string) any { return 1500 * time.Millisecond }},
		{name: "run timeout empty means no limit", env: map[string]string{"ADE_RUN_TIMEOUT_SECONDS": ""},
			got: func(s *Settings) any { return s.RunTimeout }, want: func(string) any { return time.Duration(0) }},
		{name: "run timeout", env: map[string]string{"ADE_RUN_TIMEOUT_SECONDS": "120"},
			got: func(s *Settings) any { return s.RunTimeout }, want: func(string) any { return 2 * time.Minute }},
		{name: "concurrency", env: map[string]string{"ADE_WORKER_CONCURRENCY": " 8 "},
			got: func(s *Settings) any { return s.Concurrency }, want: func(string) any { return 8 }},
		{name: "empty concurrency means default", env: map[string]string{"ADE_WORKER_CONCURRENCY": ""},
			got: func(s *Settings) any { return s.Concurrency }, want: func(string) any { return defaultConcurrency() }},
		{name: "flag wins over environment", env: map[string]string{"ADE_WORKER_CONCURRENCY": "5"}, args: []string{"--concurrency", "2"},
			got: func(s *Settings) any { return s.Concurrency }, want: func(string) any { return 2 }},
		{name: "poll intervals", env: map[string]string{"ADE_WORKER_POLL_INTERVAL": "0.25", "ADE_WORKER_POLL_INTERVAL_MAX": "0.25"},
			got:  func(s *Settings) any { return []time.Duration{s.PollInterval, s.PollIntervalMax} },
			want: func(string) any { return []time.Duration{250 * time.Millisecond, 250 * time.Millisecond} }},
		{name: "cleanup and metrics intervals", env: map[string]string{"ADE_WORKER_CLEANUP_INTERVAL": "5", "ADE_WORKER_METRICS_INTERVAL": "60"},
			got:  func(s *Settings) any { return []time.Duration{s.CleanupInterval, s.MetricsInterval} },
			want: func(string) any { return []time.Duration{5 * time.Second, time.Minute} }},
		{name: "worker id", env: map[string]string{"ADE_WORKER_ID": "worker-a"},
			got: func(s *Settings) any { return s.WorkerID }, want: func(string) any { return "worker-a" }},
		{name: "job lease, attempts, backoff",
			env: map[string]string{"ADE_WORKER_JOB_LEASE_SECONDS": "60", "ADE_WORKER_JOB_MAX_ATTEMPTS": "1",
				"ADE_WORKER_JOB_BACKOFF_BASE_SECONDS": "0", "ADE_WORKER_JOB_BACKOFF_MAX_SECONDS": "0"},
			got:  func(s *Settings) any { return []any{s.LeaseSeconds, s.MaxAttempts, s.BackoffBase, s.BackoffMax} },
			want: func(string) any { return []any{time.Minute, 1, time.Duration(0), time.Duration(0)} }},
		{name: "log level debug", env: map[string]string{"ADE_WORKER_LOG_LEVEL": "debug"},
			got: func(s *Settings) any { return s.LogLevel }, want: func(string) any { return "debug" }},
		{name: "log level WARNING", env: map[string]string{"ADE_WORKER_LOG_LEVEL": "WARNING"},
			got: func(s *Settings) any { return s.LogLevel }, want: func(string) any { return "warn" }},
		{name: "log level CRITICAL", env: map[string]string{"ADE_WORKER_LOG_LEVEL": "critical"},
			got: func(s *Settings) any { return s.LogLevel }, want: func(string) any { return "error" }},
		{name: "ADE_LOG_LEVEL fallback", env: map[string]string{"ADE_LOG_LEVEL": "DEBUG"},
			got: func(s *Settings) any { return s.LogLevel }, want: func(string) any { return "debug" }},
		{name: "ADE_WORKER_LOG_LEVEL wins over ADE_LOG_LEVEL", env: map[string]string{"ADE_WORKER_LOG_LEVEL": "ERROR", "ADE_LOG_LEVEL": "DEBUG"},
			got: func(s *Settings) any { return s.LogLevel }, want: func(string) any { return "error" }},
		{name: "empty ADE_WORKER_LOG_LEVEL falls back", env: map[string]string{"ADE_WORKER_LOG_LEVEL": "", "ADE_LOG_LEVEL": "WARN"},
			got: func(s *Settings) any { return s.LogLevel }, want: func(string) any { return "warn" }},
		{name: "log format", args: []string{"--log-format", "Console"},
			got: func(s *Settings) any { return s.LogFormat }, want: func(string) any { return "console" }},
		{name: "shutdown grace zero", env: map[string]string{"ADE_WORKER_SHUTDOWN_GRACE_SECONDS": "0"},
			got: func(s *Settings) any { return s.ShutdownGrace }, want: func(string) any { return time.Duration(0) }},
		{name: "http addr port only", env: map[string]string{"ADE_WORKER_HTTP_ADDR": ":9464"},
			got: func(s *Settings) any { return s.HTTPAddr }, want: func(string) any { return ":9464" }},
		{name: "http addr by flag", args: []string{"--http-addr", "127.0.0.1:0"},
			got: func(s *Settings) any { return s.HTTPAddr }, want: func(string) any { return "127.0.0.1:0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unsetEnv(t, "ADE_")
			t.Chdir(t.TempDir())
			dir := cwd(t)
			if tt.setup != nil {
				tt.setup(t)
			}
			s, err := loadHere(t, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tt.got(s), tt.want(dir); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// loadHere is load without a fresh folder or environment, for tests that
// prepare them.
func loadHere(t *testing.T, env map[string]string, args ...string) (*Settings, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var got *Settings
	app := &cli.App{Name: "test", Flags: Flags(), Writer: io.Discard, ErrWriter: io.Discard,
		Action: func(c *cli.Context) (err error) {
			got, err = FromCLI(c)
			return err
		}}
	return got, app.Run(append([]string{"test"}, args...))
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		env   string
		value string
		args  []string
		other map[string]string // more variables to set
		want  string            // the variable the error must name
	}{
		{env: "ADE_DATABASE_URL", value: "mysql://u@h/db"},
		{env: "ADE_DATABASE_URL", value: "sqlite:///:memory:"},
		{env: "ADE_DATABASE_LISTEN_URL", value: "postgresql://u@db/ade"}, // beside the default SQLite database
		{env: "ADE_DATABASE_LISTEN_URL", value: "sqlite:///other.sqlite", other: map[string]string{"ADE_DATABASE_URL": "postgresql://u@db/ade"}},
		{env: "ADE_DATABASE_LISTEN_URL", value: "mysql://u@h/db", other: map[string]string{"ADE_DATABASE_URL": "postgresql://u@db/ade"}},
		{env: "ADE_DATABASE_POOL_SIZE", value: "1"},
		{env: "ADE_DATABASE_POOL_SIZE", value: "many"},
		{env: "ADE_DATABASE_SQLITE_JOURNAL_MODE", value: "FAST"},
		{env: "ADE_DATABASE_SQLITE_SYNCHRONOUS", value: "2"},
		{env: "ADE_DATABASE_SQLITE_BUSY_TIMEOUT_MS", value: "-1"},
		{env: "ADE_DATABASE_SQLITE_BUSY_TIMEOUT_MS", value: "1.5"},
		{env: "ADE_BUILD_TIMEOUT", value: "0"},
		{env: "ADE_BUILD_TIMEOUT", value: "-5"},
		{env: "ADE_BUILD_TIMEOUT", value: "10m"},
		{env: "ADE_BUILD_TIMEOUT", value: "NaN"},
		{env: "ADE_BUILD_TIMEOUT", value: "Inf"},
		{env: "ADE_BUILD_TIMEOUT", value: "1e300"},
		{env: "ADE_RUN_TIMEOUT_SECONDS", value: "0"},
		{env: "ADE_RUN_TIMEOUT_SECONDS", value: "-1"},
		{env: "ADE_WORKER_CONCURRENCY", value: "abc"},
		{env: "ADE_WORKER_CONCURRENCY", value: "0"},
		{env: "ADE_WORKER_CONCURRENCY", value: "2.5"},
		{env: "ADE_WORKER_POLL_INTERVAL", value: "0"},
		{env: "ADE_WORKER_POLL_INTERVAL_MAX", value: "x"},
		{env: "ADE_WORKER_POLL_INTERVAL_MAX", value: "0.1"}, // below the 0.5 s interval
		{env: "ADE_WORKER_POLL_INTERVAL_MAX", value: "1", other: map[string]string{"ADE_WORKER_POLL_INTERVAL": "3"}},
		{env: "ADE_WORKER_CLEANUP_INTERVAL", value: "0"},
		{env: "ADE_WORKER_METRICS_INTERVAL", value: "-30"},
		{env: "ADE_WORKER_ID", value: strings.Repeat("w", 256)},
		{env: "ADE_WORKER_JOB_LEASE_SECONDS", value: "0"},
		{env: "ADE_WORKER_JOB_LEASE_SECONDS", value: "1.5"}, // no room for heartbeats and the fence margin
		{env: "ADE_WORKER_JOB_MAX_ATTEMPTS", value: "0"},
		{env: "ADE_WORKER_JOB_BACKOFF_BASE_SECONDS", value: "-1"},
		{env: "ADE_WORKER_JOB_BACKOFF_MAX_SECONDS", value: "soon"},
		{env: "ADE_WORKER_SHUTDOWN_GRACE_SECONDS", value: "-1"},
		{env: "ADE_WORKER_HTTP_ADDR", value: "9464"},
		{env: "ADE_WORKER_HTTP_ADDR", value: ":http"},
		{env: "ADE_WORKER_HTTP_ADDR", value: ":70000"},
		{env: "ADE_WORKER_LOG_LEVEL", value: "verbose"},
		{env: "ADE_LOG_LEVEL", value: "verbose"},
		{env: "ADE_WORKER_LOG_FORMAT", value: "xml"},
		{env: "ADE_WORKER_SANDBOX", value: "strict"},
		{env: "ADE_WORKER_MAX_HANDBACKS", value: "-1"},
		{env: "ADE_WORKER_BUILD_TCP_PORTS", value: "443,https"},
		{env: "ADE_WORKER_BUILD_TCP_PORTS", value: "70000"},
		{env: "ADE_WORKER_SANDBOX_READ", value: "/opt/wheels,relative/path"},
		{env: "ADE_WORKER_CONCURRENCY", args: []string{"--concurrency", "many"}, value: "many"},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tt.other {
				env[k] = v
			}
			if tt.args == nil {
				env[tt.env] = tt.value
			}
			_, err := load(t, env, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %T %q is not an *Error", err, err)
			}
			msg := err.Error()
			if se.Var != tt.env || !strings.Contains(msg, tt.env) || !strings.Contains(msg, "want") {
				t.Errorf("error %q: want it to name %s and what is wanted", msg, tt.env)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line", msg)
			}
			if len(tt.value) < 100 && !strings.Contains(msg, fmt.Sprintf("%q", tt.value)) {
				t.Errorf("error %q does not quote the value %q", msg, tt.value)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := load(t, map[string]string{"ADE_WORKER_CONCURRENCY": "abc"})
	if got, want := fmt.Sprint(err), `invalid ADE_WORKER_CONCURRENCY="abc": want a positive integer`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}

func TestHelpShowsEnvAndDefaults(t *testing.T) {
	var out bytes.Buffer
	app := &cli.App{Name: "test", Flags: Flags(), Writer: &out, Action: func(*cli.Context) error { return nil }}
	if err := app.Run([]string{"test", "--help"}); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, st := range table(&Settings{}) {
		def := st.defText
		if def == "" {
			def = fmt.Sprintf("%q", st.def)
		}
		want := []string{"--" + st.name, "(default: " + def + ")"}
		for _, e := range st.env {
			want = append(want, "$"+e)
		}
		for _, w := range want {
			if !strings.Contains(help, w) {
				t.Errorf("help for --%s does not show %s", st.name, w)
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	s := &Settings{BackoffBase: 5 * time.Second, BackoffMax: 300 * time.Second}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 5 * time.Second},
		{1, 5 * time.Second},
		{2, 10 * time.Second},
		{3, 20 * time.Second},
		{4, 40 * time.Second},
		{6, 160 * time.Second},
		{7, 300 * time.Second},
		{64, 300 * time.Second},
		{1 << 40, 300 * time.Second},
	}
	for _, tt := range tests {
		if got := s.Backoff(tt.attempt); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
	edge := []struct {
		base, max time.Duration
		attempt   int
		want      time.Duration
	}{
		{0, 300 * time.Second, 1 << 40, 0},
		{5 * time.Second, 0, 3, 0},
		{10 * time.Second, 5 * time.Second, 1, 5 * time.Second},
		{time.Duration(1<<62 + 1), time.Duration(1<<63 - 1), 5, time.Duration(1<<63 - 1)},
	}
	for _, tt := range edge {
		s := &Settings{BackoffBase: tt.base, BackoffMax: tt.max}
		if got := s.Backoff(tt.attempt); got != tt.want {
			t.Errorf("base %v max %v: Backoff(%d) = %v, want %v", tt.base, tt.max, tt.attempt, got, tt.want)
		}
	}
}

func TestLeaseTimings(t *testing.T) {
	tests := []struct {
		lease, cleanup, heartbeat, rescue time.Duration
	}{
		{15 * time.Second, 30 * time.Second, 3750 * time.Millisecond, 5 * time.Second},
		{60 * time.Second, 5 * time.Second, 15 * time.Second, 5 * time.Second},
		{3 * time.Second, 30 * time.Second, 750 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		s := &Settings{LeaseSeconds: tt.lease, CleanupInterval: tt.cleanup}
		if got := s.Heartbeat(); got != tt.heartbeat {
			t.Errorf("lease %v: Heartbeat() = %v, want %v", tt.lease, got, tt.heartbeat)
		}
		if got := s.RescueInterval(); got != tt.rescue {
			t.Errorf("lease %v cleanup %v: RescueInterval() = %v, want %v", tt.lease, tt.cleanup, got, tt.rescue)
		}
	}
}

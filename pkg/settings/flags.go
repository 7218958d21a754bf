package settings

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// Environment variables named in errors raised outside the table.
const (
	envDatabaseURL     = "ADE_DATABASE_URL"
	envListenURL       = "ADE_DATABASE_LISTEN_URL"
	envPollInterval    = "ADE_WORKER_POLL_INTERVAL"
	envPollIntervalMax = "ADE_WORKER_POLL_INTERVAL_MAX"
	envLease           = "ADE_WORKER_JOB_LEASE_SECONDS"
)

// Help categories.
const (
	catDatabase = "Database"
	catPaths    = "Paths"
	catJobs     = "Jobs"
	catWorker   = "Worker"
	catLogging  = "Logging"
)

// setting is one configuration value: its flag, its environment variables
// (the first wins), its default and how it is parsed into Settings.
type setting struct {
	name     string
	env      []string
	def      string // used when the value is empty; "" when computed later
	defText  string // shown in help instead of def
	usage    string
	category string
	// set parses v (trimmed, default applied) into its field of the Settings
	// the table was made for. Its error says what is wanted, e.g. "want a
	// positive integer".
	set func(v string) error
}

// Flags returns one flag per setting, each with its environment variables,
// for a cli.App or cli.Command whose action calls FromCLI.
func Flags() []cli.Flag {
	t := table(&Settings{})
	flags := make([]cli.Flag, len(t))
	for i, st := range t {
		flags[i] = &cli.StringFlag{
			Name:        st.name,
			EnvVars:     st.env,
			Value:       st.def,
			DefaultText: st.defText,
			Usage:       st.usage,
			Category:    st.category,
		}
	}
	return flags
}

// lookup returns the value of st and the environment variable to name when
// it is bad. A value that is empty falls through to the next environment
// variable, then to the default.
func (st setting) lookup(c *cli.Context) (envVar, value string) {
	// Walk up to the context that set the flag: a subcommand may define a
	// flag of the same name (enqueue build --engine-spec) that shadows it.
	v := ""
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(st.name) {
			v = strings.TrimSpace(ctx.String(st.name))
			break
		}
	}
	if v == "" {
		for _, e := range st.env[1:] {
			if ev := strings.TrimSpace(os.Getenv(e)); ev != "" {
				return e, ev
			}
		}
		return st.env[0], st.def
	}
	for _, e := range st.env {
		if strings.TrimSpace(os.Getenv(e)) == v {
			return e, v
		}
	}
	return st.env[0], v
}

func defaultConcurrency() int {
	return max(1, min(4, runtime.NumCPU()/2))
}

// table is every setting, each parsing into its field of s.
func table(s *Settings) []setting {
	return []setting{
		{name: "database-url", env: env(envDatabaseURL), def: DefaultDatabaseURL, category: catDatabase,
			usage: "the queue's database: sqlite:///relative/path, sqlite:////absolute/path or postgresql://user:password@host/db",
			set: func(v string) (err error) {
				s.DatabaseURL = v
				s.Database, err = ParseDatabaseURL(v)
				return err
			}},
		{name: "database-listen-url", env: env(envListenURL), defText: "ADE_DATABASE_URL", category: catDatabase,
			usage: "PostgreSQL only: where the LISTEN connection for instant wake-ups and cancels goes (e.g. straight to the server while ADE_DATABASE_URL goes through pgbouncer in transaction mode; a different URL also makes the pool send no named prepared statements)",
			set: optional(func(v string) (err error) {
				s.ListenDatabaseURL = v
				s.ListenDatabase, err = ParseDatabaseURL(v)
				if se, ok := err.(*Error); ok {
					se.Var = envListenURL
				}
				return err
			})},
		{name: "database-pool-size", env: env("ADE_DATABASE_POOL_SIZE"), defText: "the concurrency + 2", category: catDatabase,
			usage: "most database connections a supervisor's pool opens (its LISTEN connection apart); an idle supervisor keeps one",
			set:   optional(into(&s.PoolSize, atLeast(minPoolSize)))},
		{name: "database-sqlite-journal-mode", env: env("ADE_DATABASE_SQLITE_JOURNAL_MODE"), def: "WAL", category: catDatabase,
			usage: "SQLite journal_mode: DELETE, TRUNCATE, PERSIST, MEMORY, WAL or OFF",
			set:   enum(&s.SQLiteJournalMode, "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF")},
		{name: "database-sqlite-synchronous", env: env("ADE_DATABASE_SQLITE_SYNCHRONOUS"), def: "NORMAL", category: catDatabase,
			usage: "SQLite synchronous: OFF, NORMAL, FULL or EXTRA", set: enum(&s.SQLiteSynchronous, "OFF", "NORMAL", "FULL", "EXTRA")},
		{name: "database-sqlite-busy-timeout-ms", env: env("ADE_DATABASE_SQLITE_BUSY_TIMEOUT_MS"), def: "30000", category: catDatabase,
			usage: "how long SQLite waits for a lock, in `MILLISECONDS`", set: into(&s.SQLiteBusyTimeout, milliseconds)},

		dir("workspaces-dir", "ADE_WORKSPACES_DIR", "./data/workspaces", "", "root of the workspaces' files", &s.WorkspacesDir),
		dir("documents-dir", "ADE_DOCUMENTS_DIR", "", "the workspaces dir", "root of the stored documents", &s.DocumentsDir),
		dir("configs-dir", "ADE_CONFIGS_DIR", "", "the workspaces dir", "root of the configuration packages", &s.ConfigsDir),
		dir("runs-dir", "ADE_RUNS_DIR", "", "the workspaces dir", "root of the run folders", &s.RunsDir),
		dir("venvs-dir", "ADE_VENVS_DIR", "./data/venvs", "", "root of the build virtual environments", &s.VenvsDir),
		dir("pip-cache-dir", "ADE_PIP_CACHE_DIR", "./data/cache/pip", "", "pip's cache, shared by builds", &s.PipCacheDir),
		{name: "engine-spec", env: env("ADE_ENGINE_SPEC"), def: "apps/ade-engine", category: catPaths,
			usage: "the ADE engine to install in builds: a local path or a pip requirement",
			set:   into(&s.EngineSpec, func(v string) (string, error) { return ResolveEngineSpec(v), nil })},
		{name: "python", env: env("ADE_PYTHON"), defText: "python3, else python, found on PATH", category: catPaths,
			usage: "the Python interpreter that creates build environments", set: into(&s.Python, resolvePython)},

		{name: "build-timeout", env: env("ADE_BUILD_TIMEOUT"), def: "600", category: catJobs,
			usage: "stop a build (or a validate-only run) after `SECONDS`", set: secondsInto(&s.BuildTimeout, false)},
		{name: "run-timeout-seconds", env: env("ADE_RUN_TIMEOUT_SECONDS"), defText: "no limit", category: catJobs,
			usage: "stop a run after `SECONDS`", set: optional(secondsInto(&s.RunTimeout, false))},
		{name: "job-lease-seconds", env: env(envLease), def: "15", category: catJobs,
			usage: "how long a claim on a job lasts without a heartbeat, in `SECONDS`: a crashed host's jobs start again after about this long",
			set:   secondsInto(&s.LeaseSeconds, false)},
		{name: "job-max-attempts", env: env("ADE_WORKER_JOB_MAX_ATTEMPTS"), def: "3", category: catJobs,
			usage: "how many times a job is tried before it fails", set: into(&s.MaxAttempts, positiveInt)},
		{name: "job-backoff-base-seconds", env: env("ADE_WORKER_JOB_BACKOFF_BASE_SECONDS"), def: "5", category: catJobs,
			usage: "wait before retrying a job, doubled for each further attempt, in `SECONDS`", set: secondsInto(&s.BackoffBase, true)},
		{name: "job-backoff-max-seconds", env: env("ADE_WORKER_JOB_BACKOFF_MAX_SECONDS"), def: "300", category: catJobs,
			usage: "longest wait before retrying a job, in `SECONDS`", set: secondsInto(&s.BackoffMax, true)},

		{name: "concurrency", env: env("ADE_WORKER_CONCURRENCY"), def: strconv.Itoa(defaultConcurrency()), category: catWorker,
			defText: fmt.Sprintf("half the CPUs, 1 to 4: %d here", defaultConcurrency()),
			usage:   "how many jobs run at once", set: into(&s.Concurrency, positiveInt)},
		{name: "jobrunner-jobs", env: env("ADE_WORKER_JOBRUNNER_JOBS"), def: strconv.Itoa(DefaultJobrunnerJobs), category: catWorker,
			usage: "how many `JOBS` one jobrunner process runs, one after another, before the supervisor starts a fresh one (1: a fresh jobrunner for every job)",
			set:   into(&s.JobrunnerJobs, positiveInt)},
		{name: "poll-interval", env: env(envPollInterval), def: "0.5", category: catWorker,
			usage: "how often to look for jobs, in `SECONDS`", set: secondsInto(&s.PollInterval, false)},
		{name: "poll-interval-max", env: env(envPollIntervalMax), def: "2.0", category: catWorker,
			usage: "longest wait between looks for jobs when idle, in `SECONDS`", set: secondsInto(&s.PollIntervalMax, false)},
		{name: "idle-listeners", env: env("ADE_WORKER_IDLE_LISTENERS"), def: "4", category: catWorker,
			usage: "PostgreSQL: how many idle supervisors with free slots LISTEN for instant wake-ups (0: all); the others find work at their beat, every lease / 3 (every listening session costs the server some CPU for each NOTIFY)",
			set:   into(&s.IdleListeners, atLeast(0))},
		{name: "cleanup-interval", env: env("ADE_WORKER_CLEANUP_INTERVAL"), def: "30", category: catWorker,
			usage: "how often stuck builds and runs of failed builds are cleaned up, in `SECONDS` (expired leases: every lease / 3 when that is shorter); done by one elected supervisor",
			set:   secondsInto(&s.CleanupInterval, false)},
		{name: "metrics-interval", env: env("ADE_WORKER_METRICS_INTERVAL"), def: "30", category: catWorker,
			usage: "how often queue metrics are logged (by the elected supervisor), in `SECONDS`", set: secondsInto(&s.MetricsInterval, false)},
		{name: "worker-id", env: env("ADE_WORKER_ID"), defText: "<hostname>-<pid>-<random>", category: catWorker,
			usage: "this worker's name in job claims", set: into(&s.WorkerID, workerID)},
		{name: "claim-order", env: env("ADE_WORKER_CLAIM_ORDER"), def: "fair", category: catWorker,
			usage: "fair: the workspace with the fewest runs running takes the next slot; fifo: oldest first over all workspaces",
			set:   enum(&s.ClaimOrder, "fair", "fifo")},
		{name: "workspace-max-running", env: env("ADE_WORKER_WORKSPACE_MAX_RUNNING"), def: "0", category: catWorker, defText: "0: no cap",
			usage: "most runs of one workspace running at once across every supervisor on the database", set: into(&s.WorkspaceMaxRunning, limit)},
		{name: "max-handbacks", env: env("ADE_WORKER_MAX_HANDBACKS"), def: "3", category: catWorker,
			usage: "how often a job may be handed back at shutdown without counting an attempt; later hand-backs count", set: into(&s.MaxHandBacks, limit)},
		{name: "shutdown-grace-seconds", env: env("ADE_WORKER_SHUTDOWN_GRACE_SECONDS"), def: "30", category: catWorker,
			usage: "on SIGTERM, how long running jobs may finish before they are stopped, in `SECONDS`", set: secondsInto(&s.ShutdownGrace, true)},
		{name: "http-addr", env: env("ADE_WORKER_HTTP_ADDR"), category: catWorker, defText: "off",
			usage: "serve /livez, /readyz and /metrics on this `HOST:PORT` (e.g. :9464); empty: no HTTP server", set: into(&s.HTTPAddr, httpAddr)},

		{name: "gc-interval", env: env("ADE_WORKER_GC_INTERVAL"), def: "3600", category: catWorker, defText: "3600 (0: off)",
			usage: "how often old run folders, unused venvs and leftover build folders are removed, in `SECONDS`", set: secondsInto(&s.GCInterval, true)},
		{name: "run-artifact-ttl-days", env: env("ADE_WORKER_RUN_ARTIFACT_TTL_DAYS"), def: "30", category: catWorker, defText: "30 (0: keep forever)",
			usage: "remove a finished run's folder this many `DAYS` after it completed", set: into(&s.RunArtifactTTL, days)},
		{name: "venv-ttl-days", env: env("ADE_WORKER_VENV_TTL_DAYS"), def: "30", category: catWorker, defText: "30 (0: keep forever)",
			usage: "remove a build's venv when no run has used it for this many `DAYS`", set: into(&s.VenvTTL, days)},

		{name: "installer", env: env("ADE_WORKER_INSTALLER"), def: "auto", category: catJobs,
			usage: "what builds install with: auto (uv when it is on PATH, else pip), uv or pip", set: into(&s.Installer, installer)},
		{name: "job-memory-mb", env: env("ADE_WORKER_JOB_MEMORY_MB"), def: "0", category: catJobs, defText: "0: none",
			usage: "memory limit of a job in `MB`: the resident memory of all its processes together, and each one's address space (RLIMIT_AS)", set: into(&s.JobMemoryMB, limit)},
		{name: "job-max-processes", env: env("ADE_WORKER_JOB_MAX_PROCESSES"), def: "0", category: catJobs, defText: "0: none",
			usage: "most processes and threads a job may have at once", set: into(&s.JobMaxProcesses, limit)},
		{name: "job-max-open-files", env: env("ADE_WORKER_JOB_MAX_OPEN_FILES"), def: "0", category: catJobs, defText: "0: none",
			usage: "most open files per job process (RLIMIT_NOFILE)", set: into(&s.JobMaxOpenFiles, limit)},
		{name: "job-max-output-mb", env: env("ADE_WORKER_JOB_MAX_OUTPUT_MB"), def: "0", category: catJobs, defText: "0: none",
			usage: "largest file a job may write and most console output it may print, in `MB`", set: into(&s.JobMaxOutputMB, limit)},
		{name: "sandbox", env: env("ADE_WORKER_SANDBOX"), def: "required", category: catJobs,
			usage: "confine each job's processes with Landlock: required (refuse to start without it), best-effort or off", set: into(&s.Sandbox, sandbox.ParseMode)},
		{name: "build-tcp-ports", env: env("ADE_WORKER_BUILD_TCP_PORTS"), def: "443,80", category: catJobs,
			usage: "comma-separated TCP `PORTS` a build may connect to (the package index; a proxy's port is added)", set: into(&s.BuildTCPPorts, tcpPorts)},
		{name: "sandbox-read", env: env("ADE_WORKER_SANDBOX_READ"), category: catJobs, defText: "none",
			usage: "comma-separated absolute `PATHS` every job may also read (a wheelhouse, an interpreter outside /usr)", set: into(&s.SandboxRead, absPaths)},
		{name: "sandbox-write", env: env("ADE_WORKER_SANDBOX_WRITE"), category: catJobs, defText: "none",
			usage: "comma-separated absolute `PATHS` every job may also write (shared by all jobs of every workspace: use with care)", set: into(&s.SandboxWrite, absPaths)},
		{name: "env-passthrough", env: env("ADE_WORKER_ENV_PASSTHROUGH"), category: catJobs,
			defText: "none", usage: "comma-separated `NAMES` of extra environment variables jobs may see (e.g. HTTPS_PROXY); never give them credentials",
			set: into(&s.EnvPassthrough, envNames)},

		{name: "log-level", env: env("ADE_WORKER_LOG_LEVEL", "ADE_LOG_LEVEL"), def: "INFO", category: catLogging,
			usage: "DEBUG, INFO, WARNING, ERROR or CRITICAL", set: into(&s.LogLevel, logLevel)},
		{name: "log-format", env: env("ADE_WORKER_LOG_FORMAT"), def: "json", category: catLogging,
			usage: "json, or console for people", set: enum(&s.LogFormat, "json", "console")},
	}
}

func env(names ...string) []string { return names }

// dir is a folder setting; an empty value stays empty for finish to fill.
func dir(name, envVar, def, defText, usage string, field *string) setting {
	return setting{name: name, env: env(envVar), def: def, defText: defText, usage: usage, category: catPaths,
		set: optional(into(field, absPath))}
}

// into is the set function of a field whose value parse reads.
func into[T any](field *T, parse func(v string) (T, error)) func(string) error {
	return func(v string) (err error) {
		*field, err = parse(v)
		return err
	}
}

// secondsInto reads a number of seconds; zero only when zeroOK.
func secondsInto(field *time.Duration, zeroOK bool) func(string) error {
	return into(field, func(v string) (time.Duration, error) { return seconds(v, zeroOK) })
}

// enum reads one of names, ignoring case.
func enum(field *string, names ...string) func(string) error {
	return into(field, func(v string) (string, error) { return oneOf(v, names...) })
}

// optional leaves its field alone when the value is empty.
func optional(set func(string) error) func(string) error {
	return func(v string) error {
		if v == "" {
			return nil
		}
		return set(v)
	}
}

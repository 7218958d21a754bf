// Package settings reads the worker's configuration: every ADE_* environment
// variable of the original worker, each also available as a command-line flag.
//
// Values are parsed and checked here, all in one way, so a bad value stops
// start-up with one line that names the variable, the value and what is
// expected. An empty value means "not set": the default applies.
package settings

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// Settings is the worker's resolved configuration. Paths are absolute.
type Settings struct {
	DatabaseURL string      // ADE_DATABASE_URL as given (may hold a password: do not log)
	Database    DatabaseURL // DatabaseURL parsed
	// ListenDatabase is where PostgreSQL's LISTEN connection goes
	// (ADE_DATABASE_LISTEN_URL), the Database when unset: the one
	// connection that holds session state, so it may bypass a pgbouncer in
	// transaction mode that the pool goes through.
	ListenDatabase    DatabaseURL
	ListenDatabaseURL string // ADE_DATABASE_LISTEN_URL as given (may hold a password)
	// PoolSize is the most connections the supervisor's pool opens
	// (ADE_DATABASE_POOL_SIZE), LISTEN apart; 0 until finish sizes it to
	// the concurrency.
	PoolSize int

	SQLiteJournalMode string        // upper case, e.g. "WAL"
	SQLiteSynchronous string        // upper case, e.g. "NORMAL"
	SQLiteBusyTimeout time.Duration // whole milliseconds

	WorkspacesDir string
	DocumentsDir  string // defaults to WorkspacesDir
	ConfigsDir    string // defaults to WorkspacesDir
	RunsDir       string // defaults to WorkspacesDir
	VenvsDir      string
	PipCacheDir   string

	// EngineSpec is an absolute path when ADE_ENGINE_SPEC names an existing
	// local path, else the pip requirement as given.
	EngineSpec string
	// Python is the interpreter that creates venvs: an absolute path when it
	// was found on PATH, else the name as given (the build then fails with
	// a clear error).
	Python string

	BuildTimeout time.Duration // > 0
	RunTimeout   time.Duration // 0: no limit

	Concurrency int
	// JobrunnerJobs is how many jobs one jobrunner process serves before
	// the supervisor replaces it (1: a fresh process for every job).
	JobrunnerJobs   int
	PollInterval    time.Duration
	PollIntervalMax time.Duration // >= PollInterval
	// IdleListeners is how many supervisors with free slots listen for
	// wake-ups on PostgreSQL (0: all); one that runs jobs always listens.
	IdleListeners   int
	CleanupInterval time.Duration
	MetricsInterval time.Duration
	WorkerID        string

	// LeaseSeconds is the crash-detection window: how long a claim lasts
	// without a heartbeat, whatever the job's timeout.
	LeaseSeconds time.Duration
	MaxAttempts  int
	BackoffBase  time.Duration
	BackoffMax   time.Duration

	// ClaimOrder is "fair" (fewest running per workspace first) or "fifo"
	// (oldest first): ADE_WORKER_CLAIM_ORDER.
	ClaimOrder string
	// WorkspaceMaxRunning caps the runs of one workspace running at once
	// across the fleet (ADE_WORKER_WORKSPACE_MAX_RUNNING); 0: no cap.
	WorkspaceMaxRunning int

	// Installer is "pip", or the absolute path of uv (ADE_WORKER_INSTALLER).
	Installer string

	// Per-job limits; 0 means none.
	JobMemoryMB     int
	JobMaxProcesses int
	JobMaxOpenFiles int
	JobMaxOutputMB  int

	// Sandbox is how jobs' processes are confined (ADE_WORKER_SANDBOX);
	// BuildTCPPorts are the ports builds may connect to
	// (ADE_WORKER_BUILD_TCP_PORTS); SandboxRead are more paths every job
	// may read (ADE_WORKER_SANDBOX_READ).
	Sandbox       sandbox.Mode
	BuildTCPPorts []uint16
	SandboxRead   []string
	SandboxWrite  []string // ADE_WORKER_SANDBOX_WRITE

	// EnvPassthrough names extra variables jobs may see, beyond ChildEnv's
	// allow-list (ADE_WORKER_ENV_PASSTHROUGH).
	EnvPassthrough []string

	// Retention (the garbage collector); 0 means off / keep forever.
	GCInterval     time.Duration // ADE_WORKER_GC_INTERVAL
	RunArtifactTTL time.Duration // ADE_WORKER_RUN_ARTIFACT_TTL_DAYS
	VenvTTL        time.Duration // ADE_WORKER_VENV_TTL_DAYS

	// MaxHandBacks is how often a job may be handed back at shutdown with
	// its attempt given back (ADE_WORKER_MAX_HANDBACKS).
	MaxHandBacks int

	LogLevel      string // a zerolog level name: debug, info, warn, error
	LogFormat     string // json or console
	ShutdownGrace time.Duration

	// HTTPAddr is where /livez, /readyz and /metrics are served
	// (ADE_WORKER_HTTP_ADDR); "" means no HTTP server.
	HTTPAddr string
}

// Error is a setting with a bad value.
type Error struct {
	Var   string // the environment variable, e.g. ADE_WORKER_CONCURRENCY
	Value string // the value given (passwords hidden)
	Want  string // what is expected, e.g. "want a positive integer"
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s=%q: %s", e.Var, e.Value, e.Want)
}

// FromCLI reads, checks and resolves every setting of Flags from c. Its error
// is an *Error.
func FromCLI(c *cli.Context) (*Settings, error) {
	s := &Settings{}
	for _, st := range table(s) {
		name, v := st.lookup(c)
		if err := st.set(v); err != nil {
			return nil, asError(err, name, v)
		}
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	return s, nil
}

// finish applies the defaults and checks that depend on other settings.
func (s *Settings) finish() error {
	if s.PoolSize == 0 {
		s.PoolSize = DefaultPoolSize(s.Concurrency)
	}
	if s.ListenDatabase.Driver == "" {
		s.ListenDatabase = s.Database
	} else if s.ListenDatabase.Driver != s.Database.Driver || s.Database.Driver != Postgres {
		return &Error{Var: envListenURL, Value: redactURL(s.ListenDatabaseURL),
			Want: "want a postgresql:// URL, and only beside a postgresql:// ADE_DATABASE_URL (SQLite has no LISTEN)"}
	}
	for _, dir := range []*string{&s.DocumentsDir, &s.ConfigsDir, &s.RunsDir} {
		if *dir == "" {
			*dir = s.WorkspacesDir
		}
	}
	if s.PollIntervalMax < s.PollInterval {
		return &Error{
			Var:   envPollIntervalMax,
			Value: formatSeconds(s.PollIntervalMax),
			Want:  fmt.Sprintf("want at least %s (%s seconds)", envPollInterval, formatSeconds(s.PollInterval)),
		}
	}
	if s.LeaseSeconds < minLease {
		return &Error{Var: envLease, Value: formatSeconds(s.LeaseSeconds), Want: "want at least 2 seconds"}
	}
	return nil
}

// DefaultJobrunnerJobs is ADE_WORKER_JOBRUNNER_JOBS's default: a share of
// jobs that makes a jobrunner's start a hundredth of a job's cost, and
// bounds what a slow leak in one could grow to.
const DefaultJobrunnerJobs = 100

// DefaultPoolSize is the pool for concurrency jobs: one connection per job,
// one for the claim loop and one for the maintenance beside them.
func DefaultPoolSize(concurrency int) int { return concurrency + 2 }

// minPoolSize leaves a transaction room for the statement another goroutine
// needs meanwhile.
const minPoolSize = 2

// minLease is the shortest lease that leaves room for a heartbeat and the
// jobrunner's safety margin.
const minLease = 2 * time.Second

// Heartbeat is how often a supervisor renews its leases: four times per
// lease, so two beats may fail before the jobrunner fences itself.
func (s *Settings) Heartbeat() time.Duration { return s.LeaseSeconds / 4 }

// Beat is how often a supervisor refreshes its row in the supervisors
// table and stands for the fleet's leadership: three times per lease.
func (s *Settings) Beat() time.Duration { return max(s.LeaseSeconds/3, 100*time.Millisecond) }

// RescueInterval is how often the fleet's leader re-queues jobs whose
// lease expired: every beat, or the cleanup interval when that is shorter,
// so a crashed host's jobs start again about one lease after the crash.
func (s *Settings) RescueInterval() time.Duration { return min(s.CleanupInterval, s.Beat()) }

// Backoff is how long a job waits before its next attempt after failed
// attempt number attempt (1 for the first): BackoffBase doubled for each
// attempt after the first, capped at BackoffMax.
func (s *Settings) Backoff(attempt int) time.Duration {
	if s.BackoffBase <= 0 || s.BackoffMax <= 0 {
		return 0
	}
	d := s.BackoffBase
	for i := 1; i < attempt; i++ {
		if d >= s.BackoffMax/2 {
			return s.BackoffMax
		}
		d *= 2
	}
	return min(d, s.BackoffMax)
}

// Command supervisor runs the ADE job queue: it claims builds and runs from
// the database, starts one jobrunner process per job and records outcomes.
// Subcommands migrate the database, enqueue jobs, show status and print the
// job spec of one job for debugging.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/settings"
	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/supervisor"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// version is set at build time with -ldflags "-X main.version=..."; main
// falls back to what Go recorded (resolveVersion).
var version = ""

func main() {
	// No process of this uid (a job's code) may read the database URL from
	// this process's environment or memory, or ptrace it.
	if err := procs.NotDumpable(); err != nil {
		fmt.Fprintln(os.Stderr, "supervisor: cannot make this process non-dumpable:", err)
		os.Exit(1)
	}
	version = resolveVersion(version)
	app := &cli.App{
		Name:  "supervisor",
		Usage: "run the ADE job queue (builds and runs) against the database",
		Description: `Without a subcommand, works the queue until SIGTERM or SIGINT: claims jobs,
starts one jobrunner per job, heartbeats leases, enforces timeouts, retries
with backoff and recovers jobs of dead workers. Every setting is an ADE_*
environment variable and a flag; run 'supervisor migrate' once first. Global
flags may be given before or after the subcommand. A usage error (unknown
flag, missing or bad value, unexpected argument) prints one line on stderr
and exits 2.`,
		Version: version,
		Flags: append(settings.Flags(),
			&cli.StringFlag{Name: "jobrunner", EnvVars: []string{"ADE_WORKER_JOBRUNNER"},
				Usage: "path of the jobrunner binary (default: beside this binary, else on PATH)", Category: "Worker"},
			&cli.BoolFlag{Name: "exit-when-idle", EnvVars: []string{"ADE_WORKER_EXIT_WHEN_IDLE"},
				Usage: "exit once no build or run is queued or running (batch use)", Category: "Worker"},
			&cli.StringFlag{Name: "cpu-profile", EnvVars: []string{"ADE_WORKER_CPU_PROFILE"},
				Usage: "write a Go pprof CPU profile of the worker loop to this file (until exit)", Category: "Debugging"}),
		Action:          runWorker,
		Commands:        commands(),
		HideHelpCommand: true,
		ExitErrHandler: func(c *cli.Context, err error) {
			if err == nil {
				return
			}
			if err.Error() != "" {
				fmt.Fprintln(os.Stderr, "supervisor:", err)
			}
			code := 1
			var ec cli.ExitCoder
			if errors.As(err, &ec) {
				code = ec.ExitCode()
			}
			os.Exit(code)
		},
	}
	cliusage.Apply(app, settings.Flags)
	cliusage.Exit("supervisor", app.Run(os.Args))
}

// env is what every subcommand starts from.
type env struct {
	cfg   *settings.Settings
	log   zerolog.Logger
	store *store.Store
	// metrics is the worker's registry once serveTelemetry made one.
	metrics *telemetry.Metrics
}

// layout is where this worker's files are, as the supervisor sees them.
func (e *env) layout() layout.Layout {
	return (&supervisor.Planner{Settings: e.cfg}).Layout()
}

// opening says how a command opens the database.
type opening int

const (
	// existing: the database must exist and be migrated (every command
	// but migrate and the worker loop).
	existing opening = iota
	// creating: an SQLite file is created when missing (migrate, the
	// worker loop, which then says the database is not migrated).
	creating
)

// setup reads the settings, makes the logger and opens the database.
func setup(c *cli.Context, how opening) (*env, error) {
	cfg, err := settings.FromCLI(c)
	if err != nil {
		return nil, err
	}
	log := newLogger(cfg)
	logDatabase(log, cfg, how)
	st, err := store.Open(c.Context, cfg.Database, store.Options{
		SQLiteJournalMode: cfg.SQLiteJournalMode, SQLiteSynchronous: cfg.SQLiteSynchronous,
		SQLiteBusyTimeout: cfg.SQLiteBusyTimeout, MustExist: how == existing,
		PoolSize: cfg.PoolSize, ListenDSN: cfg.ListenDatabase.DSN, AppName: store.AppName(cfg.WorkerID),
	})
	if err != nil {
		return nil, err
	}
	st.SetClaimPolicy(store.ClaimPolicy{FIFO: cfg.ClaimOrder == "fifo", WorkspaceMaxRunning: cfg.WorkspaceMaxRunning})
	if how == existing {
		if err := st.CheckMigrated(c.Context); err != nil {
			st.Close()
			return nil, err
		}
	}
	return &env{cfg: cfg, log: log, store: st}, nil
}

// logDatabase says which database was chosen and why: the worker and
// migrate at info level, the other commands at debug level so that their
// stderr stays quiet.
func logDatabase(log zerolog.Logger, cfg *settings.Settings, how opening) {
	ev := log.Debug()
	if how == creating {
		ev = log.Info()
	}
	from := "ADE_DATABASE_URL"
	if cfg.DatabaseURL == settings.DefaultDatabaseURL {
		from = "the default (ADE_DATABASE_URL unset or empty)"
	}
	ev.Str("database", cfg.Database.Name()).Str("driver", string(cfg.Database.Driver)).Str("from", from).Msg("database chosen")
}

func newLogger(cfg *settings.Settings) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	var w = zerolog.New(os.Stderr)
	if cfg.LogFormat == "console" {
		w = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	}
	return w.Level(level).With().Timestamp().Str("worker_id", cfg.WorkerID).Logger()
}

func runWorker(c *cli.Context) error {
	if c.Args().Len() > 0 {
		var names []string
		for _, cmd := range c.App.Commands {
			names = append(names, cmd.Name)
		}
		return cliusage.Errorf(c, "unknown command %q%s", c.Args().First(), cliusage.Suggest(c.Args().First(), names, ""))
	}
	e, err := setup(c, creating)
	if err != nil {
		return err
	}
	defer e.store.Close()
	jobrunner, err := findJobrunner(c.String("jobrunner"))
	if err != nil {
		return err
	}
	support, err := checkSandbox(e)
	if err != nil {
		return err
	}
	// Daemons of a job whose jobrunner died become ours, and are ended
	// when that jobrunner is reaped (procs.Children).
	if err := procs.BecomeSubreaper(); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	if path := c.String("cpu-profile"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	setGoMaxProcs(e.cfg.Concurrency)
	sup := supervisor.New(e.cfg, e.store, e.log, jobrunner, supervisor.WithOrphanReaper())
	sup.ExitWhenIdle = c.Bool("exit-when-idle")
	sup.Version = version
	stopHTTP, err := serveTelemetry(e, sup)
	if err != nil {
		return err
	}
	defer stopHTTP()
	reportSandbox(e, sup, support)
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		sig := <-sigs
		sup.Health().Draining() // not ready before anything else
		e.log.Info().Str("signal", sig.String()).Msg("stopping: no new claims; running jobs get the shutdown grace")
		cancel()
		sig = <-sigs
		e.log.Warn().Str("signal", sig.String()).Msg("second signal: stopping running jobs now")
		sup.StopNow()
	}()
	if err := sup.Run(ctx); err != nil {
		if errors.Is(err, store.ErrDatabaseFileChanged) {
			return cli.Exit("", 1) // the supervisor logged the one error line
		}
		return err
	}
	return nil
}

// startCPUProfile starts a pprof CPU profile written to path; the returned
// function stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// findJobrunner locates the jobrunner binary: the flag, else beside this
// binary, else on PATH.
func findJobrunner(flag string) (string, error) {
	if flag != "" {
		abs, err := filepath.Abs(flag)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("jobrunner not found at %s (ADE_WORKER_JOBRUNNER)", abs)
		}
		return abs, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "jobrunner")
		if _, err := os.Stat(beside); err == nil {
			return beside, nil
		}
	}
	p, err := exec.LookPath("jobrunner")
	if err != nil {
		return "", errors.New("jobrunner binary not found beside supervisor or on PATH: build it (go build ./cmd/jobrunner) or set ADE_WORKER_JOBRUNNER")
	}
	return filepath.Abs(p)
}

// withStore runs fn with the settings and an existing, migrated database.
func withStore(fn func(c *cli.Context, e *env) error) cli.ActionFunc {
	return withDatabase(existing, fn)
}

func withDatabase(how opening, fn func(c *cli.Context, e *env) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		e, err := setup(c, how)
		if err != nil {
			return err
		}
		defer e.store.Close()
		return fn(c, e)
	}
}

func now() time.Time { return time.Now().UTC() }

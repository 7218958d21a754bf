// Command jobrunner executes one ADE job (a build or a run) described by a
// JSON job spec, writes the job's events file and prints one JSON result.
// The supervisor starts one per job; people run it by hand to debug a job.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ade-org/ade-worker/pkg/cliusage"
	"github.com/ade-org/ade-worker/pkg/jobrunner"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/procs"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const description = `jobrunner reads ONE job spec (JSON) on stdin, or from --job FILE, runs it,
appends the job's events to the events file named in the spec, prints ONE
result (JSON) on stdout and exits:

  0  the job succeeded
  1  the job failed (the result says why)
  2  the job spec is unusable (malformed, oversized, unknown version)
  3  a fault of this host; running the job again may help

It never opens the database and reads no ADE_* variables: everything comes
from the spec. To debug a job by hand, print the spec the supervisor would
send and pipe it in:

  supervisor job-spec RUN_OR_BUILD_ID > job.json
  jobrunner < job.json

SIGTERM or SIGINT stops the job's processes and reports the job cancelled.
A spec from the supervisor carries a "lease": the jobrunner then stops the
job by itself when the supervisor stops renewing it (see the README,
"Leases and fencing"). A spec without one runs without that watch.`

func main() {
	// One job's relay is one core's work at most; a single P spares the
	// thread hand-offs that cost a short-lived jobrunner about a tenth of
	// its CPU (GOMAXPROCS in the environment still wins).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// Before anything else: the job's own code, same uid, must not read
	// this process's memory or descriptors (the lease pipe) through /proc.
	if err := procs.NotDumpable(); err != nil {
		fmt.Fprintln(os.Stderr, "jobrunner: cannot make this process non-dumpable:", err)
		os.Exit(3)
	}
	if len(os.Args) > 1 && os.Args[1] == procs.LimitShimArg {
		// Internal: apply the job's resource limits, then exec the engine.
		err := procs.ExecWithLimits(os.Args[2:])
		fmt.Fprintln(os.Stderr, "jobrunner:", err)
		os.Exit(127)
	}
	if len(os.Args) == 2 && os.Args[1] == jobrunner.ServeArg {
		os.Exit(serve())
	}
	app := &cli.App{
		Name:        "jobrunner",
		Usage:       "run one ADE build or run from a JSON job spec",
		Description: description,
		Version:     version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "job", Usage: "read the job spec from `FILE` instead of stdin"},
		},
		HideHelpCommand: true,
		Action:          run,
	}
	cliusage.Apply(app, nil)
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "jobrunner:", err)
		os.Exit(jobspec.ExitBadSpec)
	}
}

func run(c *cli.Context) error {
	if c.Args().Present() {
		// Exit 2 like a bad spec: nothing ran, and no result is printed.
		return cliusage.Errorf(c, "unexpected argument %q (the job spec comes on stdin or with --job FILE)", c.Args().First())
	}
	var in io.Reader = os.Stdin
	if path := c.String("job"); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return cli.Exit(report(jobrunner.BadSpec(fmt.Sprintf("open job spec: %v", err))), jobspec.ExitBadSpec)
		}
		defer f.Close()
		in = f
	}
	spec, err := jobspec.Decode(in)
	if err != nil {
		return cli.Exit(report(jobrunner.BadSpec(err.Error())), jobspec.ExitBadSpec)
	}
	ctx, stop := startJobs()
	defer stop()
	res := jobrunner.ExecuteFenced(ctx, spec, func(take func(string)) func() {
		// The engine must not inherit the renewal pipe.
		syscall.CloseOnExec(spec.Lease.RenewalFD)
		go jobrunner.ReadRenewals(os.NewFile(uintptr(spec.Lease.RenewalFD), "lease renewals"), take)
		return func() {}
	})
	if res.Reason == jobspec.ReasonLeaseLapsed {
		fmt.Fprintln(os.Stderr, "jobrunner: lease not renewed in time; the engine was stopped")
	}
	return cli.Exit(report(res), res.ProcessExit())
}

// startJobs readies this process to run jobs: orphans of an engine
// (daemons it detached) become ours, so they are killed with its job
// instead of living on, and the returned context ends at SIGTERM or
// SIGINT.
func startJobs() (context.Context, context.CancelFunc) {
	if err := procs.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "jobrunner: cannot become a subreaper; detached engine processes may outlive their job:", err)
	}
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// serve runs job after job for a supervisor (jobrunner.Serve): specs on
// stdin, results on stdout, lease renewals on descriptor 3.
func serve() int {
	ctx, stop := startJobs()
	defer stop()
	syscall.CloseOnExec(renewalFD) // the engine must not inherit it
	renewals := os.NewFile(renewalFD, "lease renewals")
	err := jobrunner.Serve(ctx, os.Stdin, os.Stdout, renewals, func(msg string) { fmt.Fprintln(os.Stderr, "jobrunner:", msg) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobrunner:", err)
		return jobspec.ExitEnvironment
	}
	return 0
}

// renewalFD is where a supervisor passes lease renewals to a serving
// jobrunner (its first extra file).
const renewalFD = 3

// report prints the result on stdout and returns the error line for stderr.
func report(res *jobspec.Result) string {
	data, _ := json.Marshal(res)
	fmt.Fprintln(os.Stdout, string(data))
	if res.Status == jobspec.StatusSucceeded {
		return ""
	}
	return "jobrunner: " + res.Error
}

// Command bench measures ade-worker the way a user sees it: it builds the
// supervisor and jobrunner binaries, makes its own databases and folders,
// runs the real `supervisor` processes and reads throughput, latency, CPU
// and memory from outside (database timestamps, the wall clock and /proc).
// Each figure is the median over repeats, with min and max.
//
//	go run ./test/bench [--backend sqlite|postgres|both] [--workload NAME|all]
//	                    [--quick] [--repeat N] [--markdown] [--keep] [--profile DIR]
//	                    [--claim-order fair|fifo]
//
// Workloads (issue 5): engine-realistic, overhead, pickup, depth, firehose,
// builds; fairness (issue 18); fleet (issue 20: N supervisors on a private PostgreSQL cluster). PostgreSQL databases are created and dropped through the admin URL
// in ADE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
// It exits non-zero when a workload fails, not when a target is missed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ade-org/ade-worker/test/pgtemp"
	"github.com/ade-org/ade-worker/test/procmem"
)

// workloads are the bench's workloads (issue 5), in the order they run and
// print.
var workloads = []struct {
	name string
	run  func(b *bench, ctx context.Context, backend string) ([]row, error)
}{
	{"engine-realistic", (*bench).engineRealistic},
	{"overhead", (*bench).overhead},
	{"pickup", (*bench).pickup},
	{"depth", (*bench).depth},
	{"firehose", (*bench).firehose},
	{"builds", (*bench).builds},
	{"fairness", (*bench).fairness},
	{"fleet", (*bench).fleet},
	{"jobrunner", (*bench).jobrunnerShare},
}

func workloadNames() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.name
	}
	return names
}

type options struct {
	backends   []string
	workloads  []string
	quick      bool
	markdown   bool
	repeat     int
	keep       bool
	pgAdmin    string
	tmpDir     string
	profileDir string
	claimOrder string // ADE_WORKER_CLAIM_ORDER of every supervisor ("": the default)
	// binariesFrom is the checkout whose supervisor and jobrunner are
	// measured (default: this one), e.g. main's for a before/after.
	binariesFrom string
	fleetSizes   []int // the fleet workload's N (default 1, 4, 16, 64)
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	backend := fs.String("backend", "both", "database: sqlite, postgres or both")
	names := workloadNames()
	workload := fs.String("workload", "all", "workload: "+strings.Join(names, ", ")+", or all (comma-separated list allowed)")
	quick := fs.Bool("quick", false, "smoke run: a few seconds per workload (CI)")
	markdown := fs.Bool("markdown", false, "print the table in Markdown (for BENCHMARKS.md)")
	repeat := fs.Int("repeat", 0, "repeats per figure (default 3; 1 with --quick)")
	keep := fs.Bool("keep", false, "keep the temporary folders (supervisor logs) for inspection")
	tmpDir := fs.String("dir", "", "where to make the temporary folders (default: the system temp dir)")
	profileDir := fs.String("profile", "", "write a pprof CPU profile of every supervisor started into this folder")
	claimOrder := fs.String("claim-order", "", "ADE_WORKER_CLAIM_ORDER of every supervisor, fair or fifo (default: the supervisor's default; the fairness workload sets its own)")
	fleetSizes := fs.String("fleet-sizes", "", "the fleet workload's numbers of supervisors, comma-separated (default 1,4,16,64; 1,4 with --quick)")
	binariesFrom := fs.String("binaries-from", "", "build the supervisor and jobrunner from this checkout instead (e.g. another branch's worktree, for a before/after)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./test/bench [flags]\n\nMeasures the real supervisor and jobrunner processes; see BENCHMARKS.md.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o := options{quick: *quick, markdown: *markdown, repeat: *repeat, keep: *keep, tmpDir: *tmpDir,
		pgAdmin: os.Getenv("ADE_BENCH_POSTGRES_URL"), claimOrder: *claimOrder}
	if *fleetSizes != "" {
		for _, f := range strings.Split(*fleetSizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > maxFleet {
				return o, fmt.Errorf("--fleet-sizes %q: want numbers from 1 to %d (the cluster's connections are sized for %d)", *fleetSizes, maxFleet, maxFleet)
			}
			o.fleetSizes = append(o.fleetSizes, n)
		}
	}
	if o.claimOrder != "" && o.claimOrder != "fair" && o.claimOrder != "fifo" {
		return o, fmt.Errorf("--claim-order %q: want fair or fifo", o.claimOrder)
	}
	if *binariesFrom != "" {
		abs, err := filepath.Abs(*binariesFrom)
		if err != nil {
			return o, err
		}
		if _, err := os.Stat(filepath.Join(abs, "scripts", "build-binaries.sh")); err != nil {
			return o, fmt.Errorf("--binaries-from %s: not an ade-worker checkout: %w", *binariesFrom, err)
		}
		o.binariesFrom = abs
	}
	if *profileDir != "" {
		abs, err := filepath.Abs(*profileDir)
		if err != nil {
			return o, err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return o, fmt.Errorf("--profile: %w", err)
		}
		o.profileDir = abs
	}
	if o.pgAdmin == "" {
		o.pgAdmin = pgtemp.DefaultAdminURL
	}
	switch *backend {
	case "both":
		o.backends = []string{"sqlite", "postgres"}
	case "sqlite", "postgres":
		o.backends = []string{*backend}
	default:
		return o, fmt.Errorf("--backend %q: want sqlite, postgres or both", *backend)
	}
	if *workload == "all" {
		o.workloads = names
	} else {
		for _, w := range strings.Split(*workload, ",") {
			if !slices.Contains(names, w) {
				return o, fmt.Errorf("--workload %q: want one of %s, or all", w, strings.Join(names, ", "))
			}
			o.workloads = append(o.workloads, w)
		}
	}
	if o.repeat == 0 {
		o.repeat = 3
		if o.quick {
			o.repeat = 1
		}
	}
	if o.repeat < 1 {
		return o, fmt.Errorf("--repeat %d: want at least 1", o.repeat)
	}
	return o, nil
}

func main() {
	os.Exit(run())
}

func run() int {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := newBench(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer b.close()

	var rows []row
	failed := false
	for _, wl := range opts.workloads {
		for _, backend := range opts.backends {
			if ctx.Err() != nil {
				break
			}
			b.logf("== %s on %s", wl, backend)
			began := time.Now()
			got, err := b.runWorkload(ctx, wl, backend)
			b.logf("== %s on %s took %.0f s", wl, backend, time.Since(began).Seconds())
			rows = append(rows, got...)
			if err != nil {
				failed = true
				b.logf("%s on %s FAILED: %v", wl, backend, err)
				rows = append(rows, row{workload: wl, backend: backend, err: err})
			}
		}
	}
	b.printReport(os.Stdout, rows)
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// bench holds what every workload shares: the binaries, the stand-in
// environments and the settings.
type bench struct {
	opts    options
	repo    string
	tmp     string
	bin     string
	clkTck  float64
	noopEnv string // a "venv" whose bin/python is the no-op engine
	realEnv string // a real venv with the test engine, made on first use
	floors  map[floorKey]floorResult
	started time.Time
	load    string // /proc/loadavg when the bench started
	commit  string // the commit the binaries were built from
}

func newBench(ctx context.Context, opts options) (*bench, error) {
	b := &bench{opts: opts, clkTck: procmem.ClockTicks(), floors: map[floorKey]floorResult{}, started: time.Now(),
		load: loadAvg()}
	var err error
	if b.repo, err = findRepo(); err != nil {
		return nil, err
	}
	if b.tmp, err = os.MkdirTemp(opts.tmpDir, "ade-bench-"); err != nil {
		return nil, err
	}
	if opts.keep {
		b.logf("keeping temporary folders under %s", b.tmp)
	}
	from := b.repo
	if opts.binariesFrom != "" {
		from = opts.binariesFrom
	}
	b.commit = gitDescribe(from)
	b.bin = filepath.Join(b.tmp, "bin")
	b.logf("building supervisor and jobrunner (from %s) and the no-op engine", from)
	// The binaries are built the way the image builds them.
	for _, step := range []struct {
		dir  string
		args []string
	}{
		{from, []string{"bash", "scripts/build-binaries.sh", b.bin}},
		{b.repo, []string{"go", "build", "-o", b.bin + "/", "./test/bench/noopengine"}},
	} {
		args := step.args
		build := exec.CommandContext(ctx, args[0], args[1:]...)
		build.Dir = step.dir
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			b.close()
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b.noopEnv = filepath.Join(b.tmp, "noop-venv")
	if err := makeFakeVenv(b.noopEnv, filepath.Join(b.bin, "noopengine")); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	if !b.opts.keep {
		os.RemoveAll(b.tmp)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// findRepo walks up from the working directory to this module's root.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/ade-org/ade-worker\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench from inside the ade-worker repository (go run ./test/bench)")
		}
		dir = parent
	}
}

// makeFakeVenv makes a folder that passes for a ready build environment:
// bin/python is the given program, and the build marker is present.
func makeFakeVenv(dir, python string) error {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return err
	}
	if err := os.Link(python, filepath.Join(dir, "bin", "python")); err != nil {
		return err
	}
	return writeMarker(dir)
}

func writeMarker(venv string) error {
	return os.WriteFile(filepath.Join(venv, "ade-build.json"), []byte(`{"build_id":"bench","fingerprint":"bench"}`), 0o644)
}

// realVenv makes, once, a real virtual environment with the test engine and
// the test configuration installed offline (python3 -m venv, pip install).
func (b *bench) realVenv(ctx context.Context) (string, error) {
	if b.realEnv != "" {
		return b.realEnv, nil
	}
	dir := filepath.Join(b.tmp, "real-venv")
	b.logf("making a real venv with the test engine (python3 -m venv; pip install test/engine test/config)")
	steps := [][]string{
		{"python3", "-m", "venv", dir},
		{filepath.Join(dir, "bin", "python"), "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check",
			filepath.Join(b.repo, "test", "engine"), filepath.Join(b.repo, "test", "config")},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		cmd.Dir = b.tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	if err := writeMarker(dir); err != nil {
		return "", err
	}
	b.realEnv = dir
	return dir, nil
}

func (b *bench) runWorkload(ctx context.Context, name, backend string) ([]row, error) {
	for _, w := range workloads {
		if w.name == name {
			return w.run(b, ctx, backend)
		}
	}
	return nil, fmt.Errorf("unknown workload %q", name)
}

// printReport writes the machine header and the table.
func (b *bench) printReport(w io.Writer, rows []row) {
	mode := "full"
	if b.opts.quick {
		mode = "quick (smoke run; not comparable with full runs)"
	}
	facts := [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"command", "go run ./test/bench " + strings.Join(os.Args[1:], " ")},
		{"code", b.commit},
		{"mode", fmt.Sprintf("%s, %d repeat(s) per figure", mode, b.opts.repeat)},
		{"machine", fmt.Sprintf("%s, %d cores, %s RAM, Linux %s", cpuModel(), runtime.NumCPU(), memTotal(), readTrim("/proc/sys/kernel/osrelease"))},
		{"software", fmt.Sprintf("%s, SQLite %s, %s, %s", runtime.Version(), sqliteVersion(), b.postgresVersion(), commandOutput("python3", "--version"))},
		{"temp folders", fmt.Sprintf("%s (%s)", b.tmp, fsType(b.tmp))},
		{"other load", fmt.Sprintf("load average %s at start, %s at end (1, 5, 15 min; the bench itself adds to it)", b.load, loadAvg())},
	}
	if b.opts.markdown {
		for _, f := range facts {
			fmt.Fprintf(w, "- **%s**: %s\n", f[0], f[1])
		}
		fmt.Fprintln(w)
		writeMarkdown(w, rows)
		return
	}
	for _, f := range facts {
		fmt.Fprintf(w, "%-13s %s\n", f[0]+":", f[1])
	}
	fmt.Fprintln(w)
	writeText(w, rows)
}

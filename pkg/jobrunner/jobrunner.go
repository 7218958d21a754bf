// Package jobrunner executes one job spec: a build (make a virtual
// environment) or a run (process one document with the engine). It writes the
// job's events file and returns one Result; it never touches the database.
package jobrunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ade-org/ade-worker/pkg/eventlog"
	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/sandbox"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// Execute runs spec and returns its result. It never panics on bad input:
// every problem becomes a failed Result that says what went wrong.
func Execute(ctx context.Context, spec *jobspec.Spec) *jobspec.Result {
	start := time.Now()
	res := execute(ctx, spec)
	res.JobID, res.Kind = spec.JobID, spec.Kind
	res.DurationSeconds = time.Since(start).Seconds()
	return res
}

func execute(ctx context.Context, spec *jobspec.Spec) *jobspec.Result {
	if err := spec.Validate(); err != nil {
		return failure(jobspec.ReasonBadSpec, jobspec.CodeGenericFailure, err.Error())
	}
	log, err := eventlog.Open(spec.EventsPath, eventlog.Context{
		JobID: spec.JobID, WorkspaceID: spec.WorkspaceID, BuildID: spec.BuildID, ConfigurationID: spec.ConfigurationID,
	}, eventlog.Options{Root: spec.EventsRoot()})
	if err != nil {
		return pathFailure("open events file", err)
	}
	defer log.Close()
	// Builds, and runs that rebuild a missing venv, install packages.
	spec.Env = workspaceCaches(spec.Env, spec.WorkspaceID)
	j := &job{spec: spec, log: log}
	if spec.Kind == jobspec.KindBuild || !spec.Run.Options.DryRun {
		if res := j.openScratch(); res != nil {
			return res
		}
		defer j.closeScratch()
	}
	if spec.TimeoutSeconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(spec.TimeoutSeconds*float64(time.Second)))
		defer cancel()
	}
	stopWatch := watchSpace(ctx, jobFolders(spec))
	var res *jobspec.Result
	if spec.Kind == jobspec.KindBuild {
		res = j.build(ctx)
	} else {
		res = j.run(ctx)
	}
	return j.noSpace(res, stopWatch())
}

// job carries what every step of one job needs.
type job struct {
	spec *jobspec.Spec
	log  *eventlog.Log
	// scratch is the job's private temporary folder (see openScratch).
	scratch string
}

func (j *job) emit(level, event, message string, data map[string]any) {
	// A full disk must not turn into a crash; the result still reaches the
	// supervisor on stdout.
	_ = j.log.Emit(level, event, message, data)
}

func failure(reason jobspec.Reason, code int, msg string) *jobspec.Result {
	return &jobspec.Result{Status: jobspec.StatusFailed, Reason: reason, ExitCode: code, Error: msg,
		Retryable: jobspec.ClassOf(reason) == jobspec.Transient}
}

// step is one child process of a job, with what to call it in events.
type step struct {
	name   string
	what   string // for messages: "installing the engine"
	path   string
	args   []string
	env    map[string]string
	dir    string
	stdout func(data []byte) // when set, stdout is captured (bounded) instead of logged
	// onEvent sees every engine event piped from the child.
	onEvent func(name string, data json.RawMessage)
	// policy confines the step's processes; nil runs them unconfined.
	policy *sandbox.Policy
}

// stepResult is how a step ended, with the tail of its stderr for messages.
type stepResult struct {
	limit    string // a limit the step tripped, if any
	exit     procs.Exit
	tail     string
	timedOut bool
	canceled bool
}

// maxCaptured bounds a captured stdout (version probes print a line).
const maxCaptured = 64 << 10

// runStep runs one child, piping its output into the events file, under
// the job's limits.
func (j *job) runStep(ctx context.Context, s step) (stepResult, error) {
	stepCtx, stop := context.WithCancel(ctx)
	defer stop()
	var tripped atomic.Pointer[string]
	trip := func(limit string) {
		if tripped.CompareAndSwap(nil, &limit) {
			stop()
		}
	}
	tail := &tailBuffer{max: 2048}
	var mu sync.Mutex
	onEvent := func(name string, data json.RawMessage) {
		if s.onEvent != nil {
			mu.Lock()
			defer mu.Unlock()
			s.onEvent(name, data)
		}
	}
	output := &outputBudget{left: int64(j.spec.Limits.OutputMB) << 20, exceeded: func() { trip(limitOutput) }}
	pipe := func(stream string) func(r io.Reader) {
		return func(r io.Reader) {
			if stream == "stderr" {
				r = io.TeeReader(r, tail)
			}
			if j.spec.Limits.OutputMB > 0 {
				r = io.TeeReader(r, output)
			}
			_ = j.log.Pipe(r, s.name, stream, onEvent)
		}
	}
	cmd := procs.Command{Path: s.path, Args: s.args, Env: j.stepEnv(s.env), Dir: s.dir, KillGrace: 2 * time.Second,
		Stdout: pipe("stdout"), Stderr: pipe("stderr"), KillDescendants: true, Rlimits: rlimits(j.spec.Limits), LimitShim: self(),
		Sandbox: s.policy}
	if s.stdout != nil {
		cmd.Stdout = func(r io.Reader) {
			data, _ := io.ReadAll(io.LimitReader(r, maxCaptured))
			_, _ = io.Copy(io.Discard, r)
			s.stdout(data)
		}
	}
	if l := j.spec.Limits; l.Processes > 0 || l.MemoryMB > 0 {
		go watchUsage(stepCtx, l, trip)
	}
	var unfence func() bool
	cmd.Started = func(pgid int) {
		// The fence kills at once: the grace would eat into the margin
		// that keeps two engines of one job from running together.
		unfence = context.AfterFunc(ctx, func() {
			if errors.Is(context.Cause(ctx), ErrLeaseLapsed) {
				procs.KillGroup(pgid)
			}
		})
	}
	exit, err := procs.Run(stepCtx, cmd)
	if unfence != nil {
		unfence()
	}
	res := stepResult{exit: exit, tail: tail.String()}
	if err != nil {
		return res, err
	}
	if p := tripped.Load(); p != nil {
		res.limit = *p
		return res, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		res.timedOut = errors.Is(ctxErr, context.DeadlineExceeded)
		res.canceled = !res.timedOut
	}
	return res, nil
}

// Limits a step can trip while it runs; the others show in how it ended.
const (
	limitOutput    = "output"
	limitProcesses = "processes"
	limitMemory    = "memory"
)

// self is this binary, which doubles as the limit shim (procs.LimitShimArg).
func self() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}

// rlimits turns the job's limits into kernel resource limits.
func rlimits(l jobspec.Limits) []procs.Rlimit {
	var out []procs.Rlimit
	if l.MemoryMB > 0 {
		out = append(out, procs.Rlimit{Resource: unix.RLIMIT_AS, Max: uint64(l.MemoryMB) << 20})
	}
	if l.OpenFiles > 0 {
		out = append(out, procs.Rlimit{Resource: unix.RLIMIT_NOFILE, Max: uint64(l.OpenFiles)})
	}
	if l.OutputMB > 0 {
		out = append(out, procs.Rlimit{Resource: unix.RLIMIT_FSIZE, Max: uint64(l.OutputMB) << 20})
	}
	return out
}

// outputBudget counts console output and calls exceeded once it runs out.
type outputBudget struct {
	left     int64
	exceeded func()
	once     sync.Once
	mu       sync.Mutex
}

func (o *outputBudget) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.left -= int64(len(p))
	over := o.left < 0
	o.mu.Unlock()
	if over {
		o.once.Do(o.exceeded)
	}
	return len(p), nil
}

// watchUsage trips a limit when the job's processes (every descendant of
// this process) together hold more threads than the process limit, or more
// resident memory than the memory limit, checking a few times a second.
// Threads count because a process limit that ignores them lets one process
// hold hundreds; memory is summed because a per-process limit lets a job
// hold it many times over in children.
func watchUsage(ctx context.Context, l jobspec.Limits, trip func(limit string)) {
	tick.Every(ctx, 200*time.Millisecond, nil, func(context.Context) bool {
		threads, rss := procs.Usage(procs.Descendants(os.Getpid()))
		switch {
		case l.Processes > 0 && threads > l.Processes:
			trip(limitProcesses)
		case l.MemoryMB > 0 && rss > int64(l.MemoryMB)<<20:
			trip(limitMemory)
		default:
			return true
		}
		return false
	})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	skip bool // dropping the rest of a line whose start is gone
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if t.skip { // inside a line whose start was dropped
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return n, nil
		}
		p, t.skip = p[i+1:], false
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		// The kept part starts mid-line: drop that scrap, or a long event
		// line's tail would pass for the engine's last message.
		keep := t.buf[len(t.buf)-t.max:]
		if i := bytes.IndexByte(keep, '\n'); i >= 0 {
			keep = keep[i+1:]
		} else {
			keep, t.skip = nil, true
		}
		t.buf = append(t.buf[:0], keep...)
	}
	return n, nil
}

// String returns the last non-empty line that is not a JSON event.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(string(t.buf), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "{") {
			return l
		}
	}
	return ""
}

// timeoutText formats the job's timeout for messages.
func (j *job) timeoutText() string {
	return (time.Duration(j.spec.TimeoutSeconds * float64(time.Second))).String()
}

// markerName is written into a venv when its build completed; a venv without
// it is a leftover of an interrupted build and never counts as ready.
const markerName = "ade-build.json"

func venvPython(venv string) string { return filepath.Join(venv, "bin", "python") }

func venvReady(venv string) bool {
	if _, err := os.Stat(venvPython(venv)); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(venv, markerName))
	return err == nil
}

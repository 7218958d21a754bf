package jobrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/sandbox"
)

func (j *job) run(ctx context.Context) *jobspec.Result {
	r := j.spec.Run
	j.emit("info", "run.start", "Run started", map[string]any{
		"attempt": j.spec.Attempt, "options": r.Options, "run_dir": r.RunDir,
	})
	if r.Options.DryRun {
		return &jobspec.Result{Status: jobspec.StatusSucceeded}
	}
	if res := configFailure(j.spec.Roots.Configs, r.ConfigDir); res != nil {
		return res
	}
	if res := j.ensureVenv(ctx); res != nil {
		return res
	}
	args, input, res := j.engineArgs()
	if res != nil {
		return res
	}
	policy := j.enginePolicy(input)
	if res := venvOutsidePolicy(r.VenvDir, policy); res != nil {
		return res
	}
	var completed json.RawMessage
	s := step{
		name: "run.engine", what: "engine", path: venvPython(r.VenvDir), args: args, env: j.spec.Env, dir: r.RunDir,
		policy: policy,
		onEvent: func(name string, data json.RawMessage) {
			if name == "engine.run.completed" || name == "engine.config.validate.completed" {
				completed = append(json.RawMessage(nil), data...)
			}
		},
	}
	j.emit("info", "run.engine.start", "Starting engine", map[string]any{"command": append([]string{s.path}, args...)})
	sr, err := j.runStep(ctx, s)
	if err != nil {
		return failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("cannot start engine: %v", err))
	}
	j.emit("info", "run.engine.exit", "Engine exited: "+sr.exit.String(), map[string]any{
		"exit_code": sr.exit.Code, "duration_ms": sr.exit.Duration.Milliseconds(),
	})
	if out := j.stepFailure("engine", sr); out != nil {
		return out
	}
	return &jobspec.Result{Status: jobspec.StatusSucceeded, ExitCode: 0, Summary: completed}
}

// venvOutsidePolicy fails a run whose venv's python leads outside what the
// engine may read (a venv made with another interpreter than ADE_PYTHON,
// say on another host sharing ADE_VENVS_DIR): the engine could not start,
// and would say so only as a crash. The venv counts as missing, so its
// build is failed and made again. Nothing here grants anything: the link
// is only compared with the policy.
func venvOutsidePolicy(venv string, p *sandbox.Policy) *jobspec.Result {
	if p == nil {
		return nil
	}
	real, err := filepath.EvalSymlinks(venvPython(venv))
	if err != nil {
		return nil // missing: the engine's start reports it
	}
	for _, dir := range p.Read {
		if rel, err := filepath.Rel(dir, real); err == nil && filepath.IsLocal(rel) {
			return nil
		}
	}
	return failure(jobspec.ReasonVenvMissing, jobspec.CodeMissingBuild, fmt.Sprintf(
		"%s (its Python %s is outside the interpreter installation runs may read, that of ADE_PYTHON)", jobspec.MsgBuildEnvMissing, real))
}

// ensureVenv rebuilds a ready build's environment that is missing on this
// host (supervisors that do not share ADE_VENVS_DIR, a deleted folder),
// under the build lock so concurrent runs of that build wait for one rebuild.
func (j *job) ensureVenv(ctx context.Context) *jobspec.Result {
	r := j.spec.Run
	if res := venvFailure(j.spec.Roots.Venvs, r.VenvDir); res != nil {
		return res
	}
	if venvReady(r.VenvDir) {
		return nil
	}
	missing := func(detail string) *jobspec.Result {
		return failure(jobspec.ReasonVenvMissing, jobspec.CodeMissingBuild, jobspec.MsgBuildEnvMissing+" ("+detail+")")
	}
	if r.Rebuild == nil {
		return missing(r.VenvDir)
	}
	j.emit("warning", "run.venv.rebuild", "Build environment missing on this host; rebuilding it", map[string]any{"venv_dir": r.VenvDir})
	var res *jobspec.Result
	err := withBuildLock(ctx, j.spec.Roots.Venvs, r.VenvDir, func() {
		if venvReady(r.VenvDir) { // another run rebuilt it while we waited
			return
		}
		res = j.makeVenv(ctx, r.Rebuild)
		if res.Status == jobspec.StatusSucceeded {
			res = nil
		}
	})
	if err != nil {
		return pathFailure("build lock", err)
	}
	if res != nil {
		if res.Reason == jobspec.ReasonTimeout || res.Reason == jobspec.ReasonCancelled {
			return res
		}
		return missing("rebuilding it here failed: " + res.Error)
	}
	return nil
}

// engineArgs stages the input and builds the engine's command line. input
// is the staged input, "" when the run has none (validate only).
func (j *job) engineArgs() (args []string, input string, res *jobspec.Result) {
	r := j.spec.Run
	if r.Options.ValidateOnly {
		return []string{"-m", "ade_engine", "config", "validate", "--config-package", r.ConfigDir, "--log-format", "ndjson"}, "", nil
	}
	if res := j.ensureRunFolders(); res != nil {
		return nil, "", res
	}
	input = filepath.Join(r.RunDir, layout.InputName, r.InputName)
	err := layout.Stage(layout.Place{Root: j.spec.Roots.Documents, Path: r.DocumentPath}, layout.Place{Root: j.spec.Roots.Runs, Path: input})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", failure(jobspec.ReasonBadInput, jobspec.CodeGenericFailure, fmt.Sprintf("document file not found: %s", r.DocumentPath))
	}
	if err != nil {
		return nil, "", pathFailure("stage document", err)
	}
	logLevel := r.Options.LogLevel
	if logLevel == "" {
		logLevel = "info"
	}
	args = []string{"-m", "ade_engine", "process", "file", "--input", input,
		"--output-dir", filepath.Join(r.RunDir, layout.OutputName), "--config-package", r.ConfigDir,
		"--log-format", "ndjson", "--log-level", logLevel}
	for _, sheet := range r.Options.InputSheetNames {
		args = append(args, "--input-sheet", sheet)
	}
	if r.Options.ActiveSheetOnly {
		args = append(args, "--active-sheet-only")
	}
	return args, input, nil
}

// stepFailure turns a step that did not succeed into a failed result, or
// returns nil when it succeeded. what names the step in messages.
func (j *job) stepFailure(what string, sr stepResult) *jobspec.Result {
	if msg := j.limitMessage(sr); msg != "" {
		return failure(jobspec.ReasonLimit, jobspec.CodeGenericFailure, fmt.Sprintf("%s was stopped: %s", capitalize(what), msg))
	}
	switch {
	case sr.timedOut:
		return failure(jobspec.ReasonTimeout, jobspec.CodeTimeout, fmt.Sprintf("%s timed out after %s", capitalize(what), j.timeoutText()))
	case sr.canceled:
		return failure(jobspec.ReasonCancelled, jobspec.CodeGenericFailure, fmt.Sprintf("%s stopped: the job was cancelled", capitalize(what)))
	case sr.exit.Signaled():
		// A crash is not the input's fault as far as we can tell: let the
		// supervisor retry it while attempts remain.
		return failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("%s crashed: %s%s", capitalize(what), sr.exit, detail(sr.tail)))
	case sr.exit.Code != 0:
		return failure(jobspec.ReasonEngineFailed, sr.exit.Code, fmt.Sprintf("%s failed with %s%s", capitalize(what), sr.exit, detail(sr.tail)))
	}
	return nil
}

// limitMessage names the job limit a step exceeded, or returns "".
func (j *job) limitMessage(sr stepResult) string {
	l := j.spec.Limits
	switch {
	case sr.limit == limitOutput:
		return fmt.Sprintf("it printed more than the output limit of %d MB (ADE_WORKER_JOB_MAX_OUTPUT_MB)", l.OutputMB)
	case sr.limit == limitProcesses:
		return fmt.Sprintf("it ran more than the process limit of %d processes and threads (ADE_WORKER_JOB_MAX_PROCESSES)", l.Processes)
	case sr.limit == limitMemory:
		return fmt.Sprintf("its processes together used more than the memory limit of %d MB (ADE_WORKER_JOB_MEMORY_MB)", l.MemoryMB)
	case sr.exit.Code == 0 && !sr.exit.Signaled():
		return ""
	// Python ignores SIGXFSZ and sees EFBIG ("File too large") instead.
	case l.OutputMB > 0 && (sr.exit.Signal == syscall.SIGXFSZ || strings.Contains(sr.tail, "File too large")):
		return fmt.Sprintf("it wrote a file larger than the output limit of %d MB (ADE_WORKER_JOB_MAX_OUTPUT_MB)", l.OutputMB)
	case l.MemoryMB > 0 && (strings.Contains(sr.tail, "MemoryError") || strings.Contains(sr.tail, "Cannot allocate memory") ||
		strings.Contains(sr.tail, "out of memory")):
		return fmt.Sprintf("it ran out of its memory limit of %d MB (ADE_WORKER_JOB_MEMORY_MB)", l.MemoryMB)
	case l.OpenFiles > 0 && strings.Contains(sr.tail, "Too many open files"):
		return fmt.Sprintf("it hit the open-files limit of %d (ADE_WORKER_JOB_MAX_OPEN_FILES)", l.OpenFiles)
	}
	return ""
}

func detail(tail string) string {
	if tail == "" {
		return ""
	}
	return ": " + tail
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

package jobrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
)

// MsgBuildEnvMissing is the error of a run whose build environment is gone.
const MsgBuildEnvMissing = "Build environment missing; rerun build"

func (j *job) run(ctx context.Context) *jobspec.Result {
	r := j.spec.Run
	j.emit("info", "run.start", "Run started", map[string]any{
		"attempt": j.spec.Attempt, "options": r.Options, "run_dir": r.RunDir,
	})
	if r.Options.DryRun {
		return &jobspec.Result{Status: jobspec.StatusSucceeded}
	}
	if _, err := os.Stat(r.ConfigDir); err != nil {
		return failure(jobspec.ReasonBadInput, jobspec.CodeGenericFailure, fmt.Sprintf("configuration package not found: %s", r.ConfigDir), false)
	}
	if !venvReady(r.VenvDir) {
		return failure(jobspec.ReasonVenvMissing, jobspec.CodeMissingBuild, MsgBuildEnvMissing+" ("+r.VenvDir+")", false)
	}
	args, res := j.engineArgs()
	if res != nil {
		return res
	}
	var completed json.RawMessage
	s := step{
		name: "run.engine", what: "engine", path: venvPython(r.VenvDir), args: args, env: j.spec.Env, dir: r.RunDir,
		onEvent: func(name string, data json.RawMessage) {
			if name == "engine.run.completed" || name == "engine.config.validate.completed" {
				completed = append(json.RawMessage(nil), data...)
			}
		},
	}
	j.emit("info", "run.engine.start", "Starting engine", map[string]any{"command": append([]string{s.path}, args...)})
	sr, err := j.runStep(ctx, s)
	if err != nil {
		return failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("cannot start engine: %v", err), true)
	}
	j.emit("info", "run.engine.exit", "Engine exited: "+sr.exit.String(), map[string]any{
		"exit_code": sr.exit.Code, "duration_ms": sr.exit.Duration.Milliseconds(),
	})
	if out := j.stepFailure("engine", sr); out != nil {
		return out
	}
	return &jobspec.Result{Status: jobspec.StatusSucceeded, ExitCode: 0, Summary: completed}
}

// engineArgs stages the input and builds the engine's command line.
func (j *job) engineArgs() ([]string, *jobspec.Result) {
	r := j.spec.Run
	if r.Options.ValidateOnly {
		return []string{"-m", "ade_engine", "config", "validate", "--config-package", r.ConfigDir, "--log-format", "ndjson"}, nil
	}
	for _, sub := range []string{"input", "output", "logs"} {
		if err := os.MkdirAll(filepath.Join(r.RunDir, sub), 0o755); err != nil {
			return nil, failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("create run folder: %v", err), true)
		}
	}
	input := filepath.Join(r.RunDir, "input", r.InputName)
	if err := layout.Stage(r.DocumentPath, input); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, failure(jobspec.ReasonBadInput, jobspec.CodeGenericFailure, fmt.Sprintf("document file not found: %s", r.DocumentPath), false)
		}
		return nil, failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("stage document: %v", err), true)
	}
	logLevel := r.Options.LogLevel
	if logLevel == "" {
		logLevel = "info"
	}
	args := []string{"-m", "ade_engine", "process", "file", "--input", input,
		"--output-dir", filepath.Join(r.RunDir, "output"), "--config-package", r.ConfigDir,
		"--log-format", "ndjson", "--log-level", logLevel}
	for _, sheet := range r.Options.InputSheetNames {
		args = append(args, "--input-sheet", sheet)
	}
	if r.Options.ActiveSheetOnly {
		args = append(args, "--active-sheet-only")
	}
	return args, nil
}

// stepFailure turns a step that did not succeed into a failed result, or
// returns nil when it succeeded. what names the step in messages.
func (j *job) stepFailure(what string, sr stepResult) *jobspec.Result {
	switch {
	case sr.timedOut:
		return failure(jobspec.ReasonTimeout, jobspec.CodeTimeout, fmt.Sprintf("%s timed out after %s", capitalize(what), j.timeoutText()), false)
	case sr.canceled:
		return failure(jobspec.ReasonCancelled, jobspec.CodeGenericFailure, fmt.Sprintf("%s stopped: the job was cancelled", capitalize(what)), true)
	case sr.exit.Signaled():
		// A crash is not the input's fault as far as we can tell: let the
		// supervisor retry it while attempts remain.
		return failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("%s crashed: %s%s", capitalize(what), sr.exit, detail(sr.tail)), true)
	case sr.exit.Code != 0:
		return failure(jobspec.ReasonEngineFailed, sr.exit.Code, fmt.Sprintf("%s failed with %s%s", capitalize(what), sr.exit, detail(sr.tail)), false)
	}
	return nil
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

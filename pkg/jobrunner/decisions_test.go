package jobrunner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/procs"
	"github.com/ade-org/ade-worker/pkg/sandbox"
)

// These tests cover the jobrunner's decisions about how a step ended. They
// start no process and need no Python.

var allLimits = jobspec.Limits{MemoryMB: 256, Processes: 20, OpenFiles: 64, OutputMB: 8}

func TestLimitMessage(t *testing.T) {
	killed := procs.Exit{Code: -1, Signal: syscall.SIGKILL}
	cases := []struct {
		name   string
		limits jobspec.Limits
		sr     stepResult
		want   string // a part of the message; "" for none
	}{
		{"output limit tripped while running", allLimits, stepResult{limit: limitOutput, exit: killed}, "output limit of 8 MB (ADE_WORKER_JOB_MAX_OUTPUT_MB)"},
		{"process limit tripped", allLimits, stepResult{limit: limitProcesses, exit: killed}, "process limit of 20 processes and threads (ADE_WORKER_JOB_MAX_PROCESSES)"},
		{"memory limit tripped while running", allLimits, stepResult{limit: limitMemory, exit: killed}, "memory limit of 256 MB (ADE_WORKER_JOB_MEMORY_MB)"},
		{"clean exit names no limit even with a memory error in the tail", allLimits, stepResult{tail: "MemoryError"}, ""},
		{"SIGXFSZ is the file-size limit", allLimits, stepResult{exit: procs.Exit{Code: -1, Signal: syscall.SIGXFSZ}}, "wrote a file larger than the output limit of 8 MB"},
		{"Python's EFBIG is the file-size limit", allLimits, stepResult{exit: procs.Exit{Code: 1}, tail: "OSError: [Errno 27] File too large"}, "larger than the output limit"},
		{"MemoryError", allLimits, stepResult{exit: procs.Exit{Code: 1}, tail: "MemoryError"}, "memory limit of 256 MB (ADE_WORKER_JOB_MEMORY_MB)"},
		{"cannot allocate memory", allLimits, stepResult{exit: procs.Exit{Code: 1}, tail: "OSError: Cannot allocate memory"}, "memory limit"},
		{"too many open files", allLimits, stepResult{exit: procs.Exit{Code: 1}, tail: "OSError: Too many open files"}, "open-files limit of 64 (ADE_WORKER_JOB_MAX_OPEN_FILES)"},
		{"memory error without a memory limit is the engine's own", jobspec.Limits{}, stepResult{exit: procs.Exit{Code: 1}, tail: "MemoryError"}, ""},
		{"SIGXFSZ without an output limit", jobspec.Limits{}, stepResult{exit: procs.Exit{Code: -1, Signal: syscall.SIGXFSZ}}, ""},
		{"an ordinary failure", allLimits, stepResult{exit: procs.Exit{Code: 3}, tail: "ValueError: bad sheet"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := &job{spec: &jobspec.Spec{Limits: tc.limits}}
			got := j.limitMessage(tc.sr)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("limitMessage = %q, want one containing %q", got, tc.want)
			}
		})
	}
}

func TestStepFailure(t *testing.T) {
	cases := []struct {
		name string
		sr   stepResult
		want *jobspec.Result // Error compared as a prefix; nil: success
	}{
		{"success", stepResult{}, nil},
		{"limit wins over the exit code", stepResult{limit: limitOutput, exit: procs.Exit{Code: -1, Signal: syscall.SIGKILL}},
			&jobspec.Result{Reason: jobspec.ReasonLimit, ExitCode: jobspec.CodeGenericFailure, Error: "Engine was stopped: it printed more"}},
		{"timeout", stepResult{timedOut: true, exit: procs.Exit{Code: -1, Signal: syscall.SIGKILL}},
			&jobspec.Result{Reason: jobspec.ReasonTimeout, ExitCode: jobspec.CodeTimeout, Error: "Engine timed out after 1m30s"}},
		{"cancelled is retryable", stepResult{canceled: true, exit: procs.Exit{Code: -1, Signal: syscall.SIGTERM}},
			&jobspec.Result{Reason: jobspec.ReasonCancelled, ExitCode: jobspec.CodeGenericFailure, Error: "Engine stopped: the job was cancelled", Retryable: true}},
		{"crash is retryable and quotes stderr", stepResult{exit: procs.Exit{Code: -1, Signal: syscall.SIGSEGV}, tail: "Segmentation fault"},
			&jobspec.Result{Reason: jobspec.ReasonEnvironment, ExitCode: jobspec.CodeGenericFailure, Error: "Engine crashed: killed by signal", Retryable: true}},
		{"non-zero exit keeps the engine's code", stepResult{exit: procs.Exit{Code: 3}, tail: "ValueError: bad sheet"},
			&jobspec.Result{Reason: jobspec.ReasonEngineFailed, ExitCode: 3, Error: "Engine failed with exit status 3: ValueError: bad sheet"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := &job{spec: &jobspec.Spec{Limits: allLimits, TimeoutSeconds: 90}}
			got := j.stepFailure("engine", tc.sr)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("stepFailure = %+v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatalf("stepFailure = nil, want %+v", tc.want)
			}
			if got.Status != jobspec.StatusFailed || got.Reason != tc.want.Reason || got.ExitCode != tc.want.ExitCode ||
				got.Retryable != tc.want.Retryable || !strings.HasPrefix(got.Error, tc.want.Error) {
				t.Errorf("stepFailure = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestInstallSteps(t *testing.T) {
	b := &jobspec.BuildSpec{Python: "/usr/bin/python3", EngineSpec: "/src/engine", ConfigDir: "/cfg"}
	tmp := "/venvs/b.tmp-1"
	py := venvPython(tmp)
	pip := "-m pip install --disable-pip-version-check --no-input "
	uv := *b
	uv.UV = "/bin/uv"
	cases := []struct {
		name string
		b    *jobspec.BuildSpec
		want []string // "name: path args"
	}{
		{"pip", b, []string{
			"build.step.venv: /usr/bin/python3 -m venv --without-pip " + tmp,
			"build.step.ensurepip: " + py + " -m ensurepip --upgrade --default-pip",
			"build.step.upgrade_pip: " + py + " " + pip + "--upgrade pip setuptools wheel",
			"build.step.install_engine: " + py + " " + pip + "/src/engine",
			"build.step.install_config: " + py + " " + pip + "/cfg",
		}},
		{"uv", &uv, []string{
			"build.step.venv: /bin/uv venv --python /usr/bin/python3 " + tmp,
			"build.step.install_engine: /bin/uv pip install --python " + py + " /src/engine",
			"build.step.install_config: /bin/uv pip install --python " + py + " /cfg",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps := installSteps(tc.b, tmp)
			var got []string
			for _, s := range steps {
				got = append(got, s.name+": "+s.path+" "+strings.Join(s.args, " "))
				if s.what == "" {
					t.Errorf("step %s has no description for messages", s.name)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestWorkspaceCaches: each workspace's builds get pip's and uv's caches of
// their own, and the build's write rights follow them, so no tenant writes
// where another's build reads.
func TestWorkspaceCaches(t *testing.T) {
	env := map[string]string{"PIP_CACHE_DIR": "/data/cache/pip", "UV_CACHE_DIR": "/data/cache/uv", "PATH": "/usr/bin"}
	a := workspaceCaches(env, "ws-a")
	b := workspaceCaches(env, "ws-b")
	if a["PIP_CACHE_DIR"] != "/data/cache/pip/workspaces/ws-a" || a["UV_CACHE_DIR"] != "/data/cache/uv/workspaces/ws-a" {
		t.Errorf("workspace a's caches = %q, %q", a["PIP_CACHE_DIR"], a["UV_CACHE_DIR"])
	}
	if b["PIP_CACHE_DIR"] != "/data/cache/pip/workspaces/ws-b" {
		t.Errorf("workspace b's pip cache = %q", b["PIP_CACHE_DIR"])
	}
	if env["PIP_CACHE_DIR"] != "/data/cache/pip" || a["PATH"] != "/usr/bin" {
		t.Errorf("the spec's own env changed (%q) or other settings were lost (%q)", env["PIP_CACHE_DIR"], a["PATH"])
	}
	for _, bad := range []string{"", ".", "..", "a/../../etc", "x\x00y"} {
		if got := workspaceCaches(env, bad)["PIP_CACHE_DIR"]; got != "/data/cache/pip/workspaces/_" {
			t.Errorf("workspace %q: pip cache %q, want the stand-in folder below the cache", bad, got)
		}
	}
	if got := workspaceCaches(map[string]string{"PIP_CACHE_DIR": "rel/cache"}, "ws-a")["PIP_CACHE_DIR"]; got != "rel/cache" {
		t.Errorf("a relative cache (never granted by the sandbox) = %q, want left alone", got)
	}

	dir := t.TempDir()
	j := &job{spec: &jobspec.Spec{WorkspaceID: "ws-a", Sandbox: &jobspec.Sandbox{Mode: "required"},
		Env: workspaceCaches(map[string]string{"PIP_CACHE_DIR": filepath.Join(dir, "pip")}, "ws-a")}}
	p := j.buildPolicy(&jobspec.BuildSpec{Python: "/usr/bin/python3", ConfigDir: dir}, filepath.Join(dir, "venv"), true)
	own := filepath.Join(dir, "pip", "workspaces", "ws-a")
	if !slices.Contains(p.Write, own) || slices.Contains(p.Write, filepath.Join(dir, "pip")) {
		t.Errorf("build writes %v, want its workspace's cache %s and not the shared root", p.Write, own)
	}

	// A link another tenant planted as ws-b's folder while the root was
	// shared: a rule would grant where it leads, so ws-b's build gets no
	// cache at all.
	elsewhere := filepath.Join(dir, "attacker")
	if err := os.MkdirAll(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "pip", "workspaces", "ws-b")); err != nil {
		t.Fatal(err)
	}
	j.spec.WorkspaceID, j.spec.Env = "ws-b", workspaceCaches(map[string]string{"PIP_CACHE_DIR": filepath.Join(dir, "pip")}, "ws-b")
	p = j.buildPolicy(&jobspec.BuildSpec{Python: "/usr/bin/python3", ConfigDir: dir}, filepath.Join(dir, "venv"), true)
	for _, w := range p.Write {
		if strings.HasPrefix(w, filepath.Join(dir, "pip")) {
			t.Errorf("build of ws-b writes %s, through the planted link", w)
		}
	}
}

// TestVenvOutsidePolicy: a venv whose python leads outside what the engine
// may read fails as a missing environment (its build is made again), not
// as an engine crash; one inside passes; unconfined runs are not checked.
func TestVenvOutsidePolicy(t *testing.T) {
	dir := t.TempDir()
	home, other := filepath.Join(dir, "python-home"), filepath.Join(dir, "other-python")
	for _, d := range []string{filepath.Join(home, "bin"), filepath.Join(other, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "python3"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	venvWith := func(name, python string) string {
		venv := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(venv, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(python, venvPython(venv)); err != nil {
			t.Fatal(err)
		}
		return venv
	}
	policy := &sandbox.Policy{Mode: sandbox.Required, Read: []string{"/usr", home}}
	good := venvWith("good", filepath.Join(home, "bin", "python3"))
	bad := venvWith("bad", filepath.Join(other, "bin", "python3"))
	if res := venvOutsidePolicy(good, policy); res != nil {
		t.Errorf("venv of the readable installation: %+v, want nil", res)
	}
	res := venvOutsidePolicy(bad, policy)
	if res == nil || res.Reason != jobspec.ReasonVenvMissing || res.ExitCode != jobspec.CodeMissingBuild ||
		!strings.Contains(res.Error, jobspec.MsgBuildEnvMissing) || !strings.Contains(res.Error, other) {
		t.Errorf("venv of another installation: %+v, want a missing environment naming %s", res, other)
	}
	if res := venvOutsidePolicy(bad, nil); res != nil {
		t.Errorf("unconfined: %+v, want nil", res)
	}
}

package jobrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ade-org/ade-worker/pkg/jobspec"
	"github.com/ade-org/ade-worker/pkg/layout"
	"github.com/ade-org/ade-worker/pkg/safepath"
	"github.com/ade-org/ade-worker/pkg/tick"
)

// verifyScript imports both packages and reports versions as one JSON line.
const verifyScript = `import json, platform, sys
import ade_engine, ade_config
try:
    from importlib.metadata import version
    engine = getattr(ade_engine, "__version__", None) or version("ade-engine")
except Exception:
    engine = getattr(ade_engine, "__version__", "unknown")
print(json.dumps({"python_version": platform.python_version(), "engine_version": str(engine)}))
`

type buildFacts struct {
	PythonVersion string `json:"python_version"`
	EngineVersion string `json:"engine_version"`
}

func (j *job) build(ctx context.Context) *jobspec.Result {
	b := j.spec.Build
	j.emit("info", "build.start", "Build started", map[string]any{
		"attempt": j.spec.Attempt, "engine_spec": b.EngineSpec, "venv_dir": b.VenvDir,
	})
	var res *jobspec.Result
	err := withBuildLock(ctx, j.spec.Roots.Venvs, b.VenvDir, func() { res = j.makeVenv(ctx, b) })
	if err != nil {
		return pathFailure("build lock", err)
	}
	return res
}

// cacheNames are the package installers' cache settings.
var cacheNames = []string{"PIP_CACHE_DIR", "UV_CACHE_DIR"}

// workspaceCaches returns env with pip's and uv's caches moved to the
// workspace's own folder below them (<cache>/workspaces/<workspace>). A
// build writes its cache, and the package's install code runs in it: a
// cache shared by every tenant would let one plant a wheel or a cached
// download that another tenant's build then installs.
func workspaceCaches(env map[string]string, workspace string) map[string]string {
	if layout.CheckID("workspace", workspace) != nil {
		workspace = "_" // a hand-written spec without a usable workspace id
	}
	out := maps.Clone(env)
	for _, name := range cacheNames {
		if dir := out[name]; filepath.IsAbs(dir) {
			out[name] = filepath.Join(dir, "workspaces", workspace)
		}
	}
	return out
}

// ownCacheFolder makes a workspace's cache folder, dir as workspaceCaches
// gave it (<cache>/workspaces/<workspace>), from the cache's root without
// following links: a rule names the folder a link leads to, and a cache
// written by a version before the split by workspace may hold a link
// another tenant planted there. On an error the build gets no cache.
func ownCacheFolder(dir string) error {
	root := filepath.Dir(filepath.Dir(dir))
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	return safepath.MkdirAll(root, rel, 0o755)
}

// makeVenv creates b's virtual environment. The caller holds the build lock.
func (j *job) makeVenv(ctx context.Context, b *jobspec.BuildSpec) *jobspec.Result {
	if res := configFailure(j.spec.Roots.Configs, b.ConfigDir); res != nil {
		return res
	}
	if res := venvFailure(j.spec.Roots.Venvs, b.VenvDir); res != nil {
		return res
	}
	// Build beside the final folder and rename at the end: an interrupted
	// build never leaves a venv at the path runs use.
	// Holding the lock, any temporary folder is a leftover of a build that
	// was killed: remove it (never through a link).
	root := j.spec.Roots.Venvs
	for _, dir := range layout.BuildTemps(b.VenvDir) {
		if dir == j.scratch {
			continue
		}
		if err := removeAll(root, dir); err != nil {
			return pathFailure("remove leftover build folder", err)
		}
	}
	tmp := fmt.Sprintf("%s%s%d", b.VenvDir, layout.TempMark, os.Getpid())
	// tmp itself exists before the first step: the sandbox grants writes
	// below folders that exist.
	if err := mkdirAll(root, tmp); err != nil {
		return pathFailure("create build folder", err)
	}
	defer removeAll(root, tmp)
	if res := j.reuseVenv(ctx, b, tmp); res != nil {
		return res
	}

	steps := installSteps(b, tmp)
	for _, s := range steps {
		s.env = j.spec.Env
		if s.dir == "" {
			s.dir = filepath.Dir(tmp)
		}
		s.policy = j.buildPolicy(b, tmp, true)
		if res := j.buildStep(ctx, s); res != nil {
			return res
		}
	}
	return j.finishVenv(ctx, b, tmp, "Installed ade_engine %s and the configuration package with Python %s")
}

// installSteps are the commands that make the venv in tmp: uv when the
// spec names it, else python -m venv and pip.
func installSteps(b *jobspec.BuildSpec, tmp string) []step {
	py := venvPython(tmp)
	if b.UV != "" {
		install := []string{"pip", "install", "--python", py}
		return []step{
			{name: "build.step.venv", what: "creating the virtual environment with uv and " + b.Python, path: b.UV, args: []string{"venv", "--python", b.Python, tmp}},
			{name: "build.step.install_engine", what: "installing the engine (" + b.EngineSpec + ") with uv", path: b.UV, args: append(install, b.EngineSpec)},
			{name: "build.step.install_config", what: "installing the configuration package with uv", path: b.UV, args: append(install, b.ConfigDir)},
		}
	}
	pip := []string{"-m", "pip", "install", "--disable-pip-version-check", "--no-input"}
	return []step{
		// pip installed by a step of its own: inside `python -m venv` a
		// failing ensurepip says only "returned non-zero exit status 1",
		// hiding pip's error (a full disk, with the file it could not write).
		{name: "build.step.venv", what: "creating the virtual environment with " + b.Python, path: b.Python, args: []string{"-m", "venv", "--without-pip", tmp}},
		// In the venv, as venv runs it: pip lists its working folder, which
		// the sandbox does not let a build read elsewhere.
		{name: "build.step.ensurepip", what: "installing pip into the virtual environment", path: py, args: []string{"-m", "ensurepip", "--upgrade", "--default-pip"}, dir: tmp},
		{name: "build.step.upgrade_pip", what: "upgrading pip", path: py, args: append(pip, "--upgrade", "pip", "setuptools", "wheel")},
		{name: "build.step.install_engine", what: "installing the engine (" + b.EngineSpec + ")", path: py, args: append(pip, b.EngineSpec)},
		{name: "build.step.install_config", what: "installing the configuration package", path: py, args: append(pip, b.ConfigDir)},
	}
}

// finishVenv verifies the environment in tmp, marks it ready and moves it
// into place. summary is a format for the engine and Python versions.
func (j *job) finishVenv(ctx context.Context, b *jobspec.BuildSpec, tmp, summary string) *jobspec.Result {
	var facts buildFacts
	verify := step{name: "build.step.verify", what: "importing ade_engine and ade_config", path: venvPython(tmp), args: []string{"-c", verifyScript},
		env: j.spec.Env, dir: filepath.Dir(tmp), stdout: func(data []byte) { _ = json.Unmarshal(lastLine(data), &facts) },
		// Read-only: the package's code runs here, and a reused
		// environment shares its files with another build's.
		policy: j.buildPolicy(b, tmp, false)}
	if res := j.buildStep(ctx, verify); res != nil {
		return res
	}
	if err := j.install(b, tmp, facts); err != nil {
		return pathFailure("install the environment", err)
	}
	return &jobspec.Result{
		Status: jobspec.StatusSucceeded, ExitCode: 0,
		PythonVersion: facts.PythonVersion, EngineVersion: facts.EngineVersion,
		PythonInterpreter: venvPython(b.VenvDir),
		BuildSummary:      fmt.Sprintf(summary, facts.EngineVersion, facts.PythonVersion),
	}
}

// reuseVenv makes tmp a copy of a ready environment of another build with
// the same fingerprint, and finishes the build from it. It returns nil when
// there is none to reuse (or copying failed), and the caller installs from
// scratch.
//
// Safe because the fingerprint covers everything installed (engine spec,
// configuration package contents, interpreter), a ready environment is never
// modified in place (builds install into a fresh folder and rename it), and
// the copy is verified by importing both packages like any build. Within a
// workspace files are shared by hard links: no job can write them (a run
// reads its venv, the verify step too, under the sandbox). Across
// workspaces they are copied (cloned where the filesystem can), so no
// tenant's job can ever change what another tenant runs.
func (j *job) reuseVenv(ctx context.Context, b *jobspec.BuildSpec, tmp string) *jobspec.Result {
	for _, src := range b.ReuseFrom {
		if src == b.VenvDir || checkFolder(j.spec.Roots.Venvs, src) != nil || !venvReady(src) {
			continue
		}
		start := time.Now()
		link := j.sameWorkspace(src)
		if err := layout.CopyTree(src, tmp, link); err != nil {
			j.emit("warning", "build.step.reuse", "Cannot reuse "+src+"; installing from scratch: "+err.Error(), map[string]any{"source": src})
			if err := removeAll(j.spec.Roots.Venvs, tmp); err != nil {
				return pathFailure("remove a failed copy", err)
			}
			if err := mkdirAll(j.spec.Roots.Venvs, tmp); err != nil {
				return pathFailure("create build folder", err)
			}
			continue
		}
		_ = os.Remove(filepath.Join(tmp, markerName))
		how := "copied"
		if link {
			how = "hard-linked"
		}
		j.emit("info", "build.step.reuse", "Reusing the environment of a ready build with the same fingerprint ("+how+")",
			map[string]any{"source": src, "how": how, "duration_ms": time.Since(start).Milliseconds()})
		return j.finishVenv(ctx, b, tmp, "Reused a ready environment with the same fingerprint (ade_engine %s, Python %s)")
	}
	return nil
}

// sameWorkspace reports whether the environment venv belongs to this job's
// workspace: the venvs root holds <workspace>/<configuration>/<build>/.venv.
func (j *job) sameWorkspace(venv string) bool {
	rel, err := filepath.Rel(j.spec.Roots.Venvs, venv)
	if j.spec.Roots.Venvs == "" || err != nil || !filepath.IsLocal(rel) {
		return false
	}
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	return first == j.spec.WorkspaceID
}

// buildStep runs one step of a build; nil means it succeeded.
func (j *job) buildStep(ctx context.Context, s step) *jobspec.Result {
	if s.name == "build.step.upgrade_pip" && offline(j.spec.Env) {
		j.emit("info", "build.step.skipped", "Skipping pip/setuptools/wheel upgrade: PIP_NO_INDEX is set", map[string]any{"step": s.name})
		return nil
	}
	j.emit("info", "build.step.start", s.name, map[string]any{"step": s.name, "command": append([]string{s.path}, s.args...)})
	sr, err := j.runStep(ctx, s)
	if err != nil {
		return failure(jobspec.ReasonEnvironment, jobspec.CodeGenericFailure, fmt.Sprintf("%s: cannot start %s: %v", s.what, s.path, err))
	}
	data := map[string]any{"step": s.name, "exit_code": sr.exit.Code, "duration_ms": sr.exit.Duration.Milliseconds()}
	res := j.stepFailure(s.what, sr)
	if res != nil && s.name == "build.step.upgrade_pip" && !sr.timedOut && !sr.canceled {
		// The upgrade is a nicety: an offline or mirror-less host still builds.
		j.emit("warning", "build.step.complete", "pip/setuptools/wheel upgrade failed; continuing with the bundled versions", data)
		return nil
	}
	if res != nil {
		j.emit("error", "build.step.complete", res.Error, data)
		return res
	}
	j.emit("info", "build.step.complete", s.name+" done", data)
	return nil
}

// install writes the ready marker and moves the finished venv into place.
func (j *job) install(b *jobspec.BuildSpec, tmp string, facts buildFacts) error {
	marker, _ := json.Marshal(map[string]any{
		"build_id": j.spec.JobID, "fingerprint": b.Fingerprint, "engine_spec": b.EngineSpec,
		"engine_version": facts.EngineVersion, "python_version": facts.PythonVersion,
		"finished_at": time.Now().UTC().Format(time.RFC3339),
	})
	if err := os.WriteFile(filepath.Join(tmp, markerName), marker, 0o644); err != nil {
		return fmt.Errorf("write build marker: %w", err)
	}
	root, rel, err := jobspec.Split(j.spec.Roots.Venvs, b.VenvDir)
	if err != nil {
		return err
	}
	if err := safepath.RemoveAll(root, rel); err != nil {
		return fmt.Errorf("remove old environment: %w", err)
	}
	if err := safepath.Rename(root, filepath.Join(filepath.Dir(rel), filepath.Base(tmp)), rel); err != nil {
		return fmt.Errorf("move environment into place: %w", err)
	}
	return nil
}

// offline reports whether pip is told not to use an index.
func offline(env map[string]string) bool {
	switch strings.ToLower(env["PIP_NO_INDEX"]) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func lastLine(data []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return []byte(lines[len(lines)-1])
}

// withBuildLock runs fn holding an exclusive lock on the build folder of
// venv, so a build and the runs that rebuild a missing venv (or two
// supervisors sharing ADE_VENVS_DIR) never install into it at once. It waits
// for the lock until ctx ends.
func withBuildLock(ctx context.Context, venvsRoot, venv string, fn func()) error {
	root, rel, err := jobspec.Split(venvsRoot, filepath.Join(filepath.Dir(venv), ".build.lock"))
	if err != nil {
		return err
	}
	f, err := lockBuildFolder(ctx, root, rel)
	if err != nil {
		return err
	}
	defer f.Close() // closing releases the lock
	fn()
	return nil
}

// lockBuildFolder waits for the build lock file root/rel and returns it
// locked. The garbage collector removes unused build folders, lock file
// included, while holding the lock: a lock won on a file that is no longer
// at the path protects nothing, so it is taken again on the file there now.
func lockBuildFolder(ctx context.Context, root, rel string) (*os.File, error) {
	for {
		if err := safepath.MkdirAll(root, filepath.Dir(rel), 0o755); err != nil {
			return nil, fmt.Errorf("create build folder: %w", err)
		}
		f, err := safepath.Open(root, rel, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open build lock: %w", err)
		}
		err = flockWait(ctx, f)
		if err == nil && sameFile(f, root, rel) {
			return f, nil
		}
		f.Close()
		if err != nil {
			return nil, err
		}
	}
}

// flockWait takes an exclusive flock on f, polling until ctx ends.
func flockWait(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK {
			return fmt.Errorf("lock build folder: %w", err)
		}
		if err := tick.Sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for another build of this environment: %w", err)
		}
	}
}

// sameFile reports whether the open file f is still the file root/rel.
func sameFile(f *os.File, root, rel string) bool {
	held, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := safepath.Lstat(root, rel)
	return err == nil && os.SameFile(held, now)
}

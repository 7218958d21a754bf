package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ade-org/ade-worker/pkg/layout"
)

// sharedVenv is one ready environment of the sample configuration (engine
// under test/engine, configuration under test/config), built once per test
// process with the commands a build runs, and copied into each world that
// needs a ready build but does not test building. A build takes 3-4 s; a
// hard-linked copy takes milliseconds. The build tests still build.
var sharedVenv struct {
	once   sync.Once
	dir    string // the venv; removed by TestMain
	engine string // ade_engine's version, as the build's verify step reports it
	python string // Python's version, likewise
	err    error
}

// readyVenv returns the shared venv, building it on first use.
func readyVenv(t *testing.T) (dir, engineVersion, pythonVersion string) {
	t.Helper()
	sharedVenv.once.Do(func() { sharedVenv.err = buildSharedVenv() })
	if sharedVenv.err != nil {
		t.Fatalf("shared venv: %v", sharedVenv.err)
	}
	return sharedVenv.dir, sharedVenv.engine, sharedVenv.python
}

// buildSharedVenv runs the steps of pkg/jobrunner's installSteps and its
// verify step (python -m venv, pip install of the engine, of the
// configuration package, then importing both), offline like the worlds.
func buildSharedVenv() error {
	root, err := os.MkdirTemp("", "ade-e2e-venv-")
	if err != nil {
		return err
	}
	sharedVenv.dir = filepath.Join(root, ".venv")
	py, err := exec.LookPath("python3")
	if err != nil {
		return err
	}
	// pip builds the local packages in their folders' copies: install from
	// copies so the repository stays clean, as a world's configuration does.
	config := filepath.Join(root, "config")
	if err := copyTree(filepath.Join(repoDir, "test", "config"), config); err != nil {
		return err
	}
	env := append(os.Environ(), "PIP_NO_INDEX=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_CACHE_DIR="+filepath.Join(root, "pip-cache"))
	vpy := filepath.Join(sharedVenv.dir, "bin", "python")
	pip := []string{"-m", "pip", "install", "--disable-pip-version-check", "--no-input"}
	steps := [][]string{
		{py, "-m", "venv", sharedVenv.dir},
		append(append([]string{vpy}, pip...), filepath.Join(repoDir, "test", "engine")),
		append(append([]string{vpy}, pip...), config),
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Env, cmd.Dir = env, root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	verify := `import json, platform, ade_engine, ade_config
from importlib.metadata import version
print(json.dumps({"python_version": platform.python_version(), "engine_version": getattr(ade_engine, "__version__", None) or version("ade-engine")}))`
	cmd := exec.Command(vpy, "-c", verify)
	cmd.Env, cmd.Dir = env, root
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("verify the shared venv: %v", err)
	}
	var facts struct {
		PythonVersion string `json:"python_version"`
		EngineVersion string `json:"engine_version"`
	}
	if err := json.Unmarshal(out, &facts); err != nil || facts.EngineVersion == "" || facts.PythonVersion == "" {
		return fmt.Errorf("verify the shared venv printed %q (%v)", out, err)
	}
	sharedVenv.engine, sharedVenv.python = facts.EngineVersion, facts.PythonVersion
	return nil
}

// removeSharedVenv deletes the shared venv's folder, if it was made.
func removeSharedVenv() {
	if sharedVenv.dir != "" {
		_ = os.RemoveAll(filepath.Dir(sharedVenv.dir))
	}
}

// installReadyBuild makes build (queued, of the sample configuration cfg,
// no supervisor running) ready the way a finished build leaves it: a copy
// of the shared venv with its ade-build.json marker at the build's venv
// path, the build row ready with the verify step's facts, and the build the
// configuration's active one. Only the build's event log is missing.
func (w *world) installReadyBuild(cfg, build string) {
	w.t.Helper()
	src, engine, python := readyVenv(w.t)
	venv := filepath.Join(w.buildDir(cfg, build), ".venv")
	if err := layout.CopyTree(src, venv, true); err != nil {
		w.t.Fatalf("copy the shared venv to %s: %v", venv, err)
	}
	var row struct {
		Fingerprint string
		EngineSpec  string
	}
	w.query(&row, `SELECT fingerprint, engine_spec FROM builds WHERE id = ?`, build)
	marker, _ := json.Marshal(map[string]any{
		"build_id": build, "fingerprint": row.Fingerprint, "engine_spec": row.EngineSpec,
		"engine_version": engine, "python_version": python, "finished_at": time.Now().UTC().Format(time.RFC3339),
	})
	if err := os.WriteFile(filepath.Join(venv, "ade-build.json"), marker, 0o644); err != nil {
		w.t.Fatal(err)
	}
	now := w.ts(time.Now())
	w.exec(`UPDATE builds SET status = 'ready', exit_code = 0, attempt_count = 1, started_at = ?, finished_at = ?,
		error_message = NULL, summary = ?, engine_version = ?, python_version = ?, python_interpreter = ?,
		claimed_by = NULL, claim_expires_at = NULL WHERE id = ? AND status = 'queued'`,
		now, now, fmt.Sprintf("Installed ade_engine %s and the configuration package with Python %s", engine, python),
		engine, python, filepath.Join(venv, "bin", "python"), build)
	w.exec(`UPDATE configurations SET active_build_id = ?, active_build_fingerprint = ?, updated_at = ? WHERE id = ?`,
		build, row.Fingerprint, now, cfg)
	if b := w.job("builds", build); b.Status != "ready" {
		w.t.Fatalf("build %s = %+v after installing the shared venv, want ready", build, b)
	}
}

// copyTree copies the folder src to dst, with the files symlinks name (as
// `supervisor enqueue configuration` copies test/config's _adebuild.py link).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return copyFile(path, target)
	})
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, info.Mode().Perm())
}

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uvStandIn implements the two uv commands builds use on top of venv and
// pip, and logs each call: uv itself cannot be installed offline here.
const uvStandIn = `#!/bin/sh
echo "$*" >> "$UV_STANDIN_LOG"
case "$1 $2" in
"venv --python") exec "$3" -m venv "$4" ;;
"pip install")
  shift 2
  [ "$1" = --python ] || exit 64
  py=$2; shift 2
  exec "$py" -m pip install --disable-pip-version-check "$@" ;;
esac
exit 64
`

// TestBuildWithUV: with ADE_WORKER_INSTALLER=uv the build makes its venv and
// installs through uv (a stand-in that logs its calls).
func TestBuildWithUV(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "uv"), []byte(uvStandIn), 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "uv.log")
	w := newWorld(t, "sqlite", map[string]string{
		"PATH":                 bin + ":" + os.Getenv("PATH"),
		"ADE_WORKER_INSTALLER": "uv",
		"UV_STANDIN_LOG":       logPath,
		// The stand-in runs inside the build's sandbox: its log is outside.
		"ADE_WORKER_SANDBOX_WRITE": filepath.Dir(logPath),
	})
	cfg := w.addConfig("")
	build := w.addBuild(cfg)
	w.start()
	if b := w.waitForStatus("builds", []string{build}, 3*time.Minute)[build]; b.Status != "ready" {
		t.Fatalf("build with uv = %+v (%s)", b, b.errText())
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("uv was never called: %v", err)
	}
	calls := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(calls) != 3 || !strings.HasPrefix(calls[0], "venv --python ") ||
		!strings.HasSuffix(calls[1], filepath.Join(repoDir, "test", "engine")) || !strings.HasPrefix(calls[2], "pip install --python ") {
		t.Errorf("uv calls = %q, want venv, then pip install of the engine and of the configuration", calls)
	}
}

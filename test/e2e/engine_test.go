package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineUnitTests runs the test engine's own Python unit tests: the
// rest of the suite trusts it to honour the engine's command line.
func TestEngineUnitTests(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("python3", "-m", "unittest", "discover", "-s", filepath.Join(repoDir, "test", "engine"), "-v")
	cmd.Dir = filepath.Join(repoDir, "test", "engine")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python3 -m unittest: %v\n%s", err, out)
	}
}

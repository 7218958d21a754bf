package fingerprint

import (
	"os"
	"path/filepath"
	"testing"
)

// The digests below were computed independently (Python's hashlib over the
// documented encoding); a change here breaks build reuse with the ADE API.
const (
	wantConfig = "sha256:a059e0d5cffc3314e2dea0ebe0d60a09b151cac319826122a8a2045d15668c38"
	wantBuild  = "9bffd4e8ed72c25c23e9bd42b5093796672f9e03843bfa597ce16418c7789548"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigAndBuild(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.py": "x", "sub/b.txt": "yz",
		// Left out: caches, venvs, version control, build metadata.
		"__pycache__/a.cpython-312.pyc": "cache", "sub/c.pyc": "cache", ".venv/bin/python": "venv",
		".git/HEAD": "ref", "ade_config.egg-info/PKG-INFO": "meta",
	})
	got, err := Config(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != wantConfig {
		t.Fatalf("Config = %s, want %s", got, wantConfig)
	}
	if fp := Build("ade-engine==1.2", got, "/usr/bin/python3"); fp != wantBuild {
		t.Errorf("Build = %s, want %s", fp, wantBuild)
	}
}

func TestConfigChangesWithContents(t *testing.T) {
	base := map[string]string{"a.py": "x", "sub/b.txt": "yz"}
	for name, edit := range map[string]map[string]string{
		"a file changed":   {"a.py": "y"},
		"a file added":     {"c.py": ""},
		"a file renamed":   {"a.py": "", "A.py": "x"},
		"contents shifted": {"a.py": "xy", "sub/b.txt": "z"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, base)
			writeFiles(t, dir, edit)
			if name == "a file renamed" {
				_ = os.Remove(filepath.Join(dir, "a.py"))
			}
			got, err := Config(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got == wantConfig {
				t.Errorf("Config unchanged after %s", name)
			}
		})
	}
}

func TestConfigMissingFolder(t *testing.T) {
	if _, err := Config(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("Config of a missing folder: want an error")
	}
}

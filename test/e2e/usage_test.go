package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// usageCase is one command line and what its one stderr line must say.
type usageCase struct {
	args []string
	want []string // substrings of the one stderr line
}

// runBinary runs a binary with an environment that has a database URL in a
// temporary folder, so no test writes into the working folder.
func runBinary(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	return runWith(t, dir, []string{"ADE_DATABASE_URL=sqlite:///" + filepath.Join(dir, "db", "ade.sqlite")}, name, args...)
}

// runWith runs a binary in dir with PATH, a workspaces folder in dir and env.
func runWith(t *testing.T, dir string, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "ADE_WORKSPACES_DIR=" + filepath.Join(dir, "ws")}, env...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestUsageErrors: every kind of usage error, for both binaries, prints one
// line on stderr naming the problem, nothing on stdout, and exits 2.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]map[string]usageCase{
		"supervisor": {
			"unknown flag":            {[]string{"--concurency", "2"}, []string{"unknown flag --concurency", "did you mean --concurrency?"}},
			"unknown subcommand flag": {[]string{"status", "--lmit", "3"}, []string{"unknown flag --lmit", "did you mean --limit?", "supervisor status --help"}},
			"bad flag value":          {[]string{"status", "--limit", "x"}, []string{`invalid value "x" for flag --limit`}},
			"flag without value":      {[]string{"status", "--limit"}, []string{"flag needs an argument: --limit"}},
			"missing required flags":  {[]string{"enqueue", "run", "--workspace", "w"}, []string{"missing required flags --configuration, --document"}},
			"missing required flag":   {[]string{"enqueue", "build", "--workspace", "w"}, []string{"missing required flag --configuration"}},
			"unexpected argument":     {[]string{"status", "foo"}, []string{`unexpected argument "foo"`}},
			"migrate extra":           {[]string{"migrate", "extra"}, []string{`unexpected argument "extra"`}},
			"unknown command":         {[]string{"statsu"}, []string{`unknown command "statsu"`, "did you mean status?"}},
			"unknown subcommand":      {[]string{"enqueue", "foo"}, []string{`unknown command "foo"`, "supervisor enqueue --help"}},
			"missing subcommand":      {[]string{"enqueue"}, []string{"missing subcommand", "configuration, document, build, run"}},
			"missing argument":        {[]string{"inspect"}, []string{"want exactly one argument"}},
			"extra argument":          {[]string{"job-spec", "a", "b"}, []string{"want exactly one argument"}},
			"bad cancel arguments":    {[]string{"cancel", "job", "x"}, []string{"run|build"}},
			"bad options JSON":        {[]string{"enqueue", "run", "--workspace", "w", "--configuration", "c", "--document", "d", "--options", "{"}, []string{"--options"}},
		},
		"jobrunner": {
			"unknown flag":        {[]string{"--jbo", "x.json"}, []string{"unknown flag --jbo", "did you mean --job?"}},
			"flag without value":  {[]string{"--job"}, []string{"flag needs an argument: --job"}},
			"unexpected argument": {[]string{"job.json"}, []string{`unexpected argument "job.json"`, "--job FILE"}},
		},
	}
	for bin, byName := range cases {
		for name, tc := range byName {
			t.Run(bin+"/"+name, func(t *testing.T) {
				t.Parallel()
				stdout, stderr, code := runBinary(t, bin, tc.args...)
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if code != 2 || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], bin+": ") {
					t.Fatalf("%s %v: exit %d, stdout %q, stderr %q; want exit 2, no stdout, one stderr line", bin, tc.args, code, stdout, stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(lines[0], w) {
						t.Errorf("%s %v: stderr %q does not say %q", bin, tc.args, lines[0], w)
					}
				}
			})
		}
	}
}

// TestHelpOnStdout: --help prints help on stdout and exits 0.
func TestHelpOnStdout(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"supervisor", "--help"}, {"supervisor", "status", "--help"},
		{"supervisor", "enqueue", "run", "--help"}, {"jobrunner", "--help"}} {
		stdout, stderr, code := runBinary(t, args[0], args[1:]...)
		if code != 0 || !strings.Contains(stdout, "USAGE") || stderr != "" {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q; want help on stdout, exit 0", args, code, len(stdout), stderr)
		}
	}
}

// TestGlobalFlagsAfterSubcommand: a global setting given after the
// subcommand is used, not rejected or ignored.
func TestGlobalFlagsAfterSubcommand(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "after", "ade.sqlite")
	_, stderr, code := runBinary(t, "supervisor", "migrate", "--database-url", "sqlite:///"+path)
	if code != 0 {
		t.Fatalf("migrate --database-url: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("migrate --database-url %s did not use it: %v", path, err)
	}
	// The flag beats ADE_DATABASE_URL (naming a missing file) wherever it
	// is given.
	env := []string{"ADE_DATABASE_URL=sqlite:///" + filepath.Join(t.TempDir(), "missing.sqlite")}
	for _, args := range [][]string{{"status", "--json", "--database-url", "sqlite:///" + path}, {"--database-url", "sqlite:///" + path, "status", "--json"}} {
		stdout, stderr, code := runWith(t, t.TempDir(), env, "supervisor", args...)
		if code != 0 || !strings.Contains(stdout, "{") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the flag's database", args, code, stdout, stderr)
		}
	}
}

package settings

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// asError names the variable and value in a parse error.
func asError(err error, envVar, value string) error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	return &Error{Var: envVar, Value: value, Want: err.Error()}
}

// oneOf returns the entry of names that v matches, ignoring case.
func oneOf(v string, names ...string) (string, error) {
	for _, n := range names {
		if strings.EqualFold(v, n) {
			return n, nil
		}
	}
	return "", errors.New("want one of " + strings.Join(names, ", "))
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errors.New("want a positive integer")
	}
	return n, nil
}

// atLeast parses a whole number no smaller than least.
func atLeast(least int) func(v string) (int, error) {
	return func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			return 0, fmt.Errorf("want a whole number, at least %d", least)
		}
		return n, nil
	}
}

// limit parses a per-job limit: a whole number, 0 for none.
func limit(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errors.New("want a whole number (0 for no limit)")
	}
	return n, nil
}

func milliseconds(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/int64(time.Millisecond) {
		return 0, errors.New("want a whole number of milliseconds, 0 or more")
	}
	return time.Duration(n) * time.Millisecond, nil
}

// seconds parses a number of seconds such as "30" or "0.5"; zero is allowed
// only when zeroOK.
func seconds(v string, zeroOK bool) (time.Duration, error) {
	want := "want a number of seconds greater than 0"
	if zeroOK {
		want = "want a number of seconds, 0 or more"
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < 0 || (f == 0 && !zeroOK) {
		return 0, errors.New(want)
	}
	if f >= float64(math.MaxInt64)/float64(time.Second) {
		return 0, errors.New(want + " (and less than 292 years)")
	}
	d := time.Duration(f * float64(time.Second))
	if d == 0 && !zeroOK {
		return 0, errors.New(want)
	}
	return d, nil
}

// days parses a number of days such as "30" or "0.5"; 0 means never.
func days(v string) (time.Duration, error) {
	const want = "want a number of days, 0 or more (0 keeps forever)"
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f*24*3600 >= float64(math.MaxInt64)/float64(time.Second) {
		return 0, errors.New(want)
	}
	return time.Duration(f * 24 * float64(time.Hour)), nil
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func absPath(v string) (string, error) {
	p, err := filepath.Abs(v)
	if err != nil {
		return "", fmt.Errorf("want a usable path: %w", err)
	}
	return p, nil
}

// ResolveEngineSpec turns an engine spec naming an existing local path into
// an absolute path, so pip finds it whatever folder it runs in. Like pip,
// only a spec that looks like a path (it contains a slash or starts with a
// dot) is taken as one; anything else is a pip requirement and is kept as
// given. It is the one rule for ADE_ENGINE_SPEC and a build row's
// engine_spec.
func ResolveEngineSpec(v string) string {
	looksLikePath := strings.ContainsRune(v, filepath.Separator) || strings.HasPrefix(v, ".")
	if !looksLikePath || strings.Contains(v, "://") {
		return v
	}
	if _, err := os.Stat(v); err != nil {
		return v
	}
	if abs, err := filepath.Abs(v); err == nil {
		return abs
	}
	return v
}

// resolvePython finds the interpreter on PATH. An empty value means python3,
// else python. A name not found is kept as given.
func resolvePython(v string) (string, error) {
	if v == "" {
		for _, name := range []string{"python3", "python"} {
			if p, err := exec.LookPath(name); err == nil {
				return absPath(p)
			}
		}
		return "python3", nil
	}
	if !strings.ContainsRune(v, filepath.Separator) {
		if p, err := exec.LookPath(v); err == nil {
			return absPath(p)
		}
		return v, nil
	}
	return absPath(v)
}

func workerID(v string) (string, error) {
	if v == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "worker"
		}
		// The random part keeps ids apart where host and pid repeat:
		// containers on the host's network share its name, and each one's
		// supervisor is often pid 1 or 7. Two supervisors with one id
		// would pass each other's fences.
		var b [3]byte
		_, _ = rand.Read(b[:])
		return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:])), nil
	}
	if len(v) > 255 {
		return "", errors.New("want at most 255 bytes")
	}
	return v, nil
}

// logLevel maps the original worker's level names to zerolog's.
func logLevel(v string) (string, error) {
	switch strings.ToUpper(v) {
	case "DEBUG":
		return "debug", nil
	case "INFO":
		return "info", nil
	case "WARNING", "WARN":
		return "warn", nil
	case "ERROR", "CRITICAL":
		return "error", nil
	}
	return "", errors.New("want one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
}

// envNames parses a comma-separated list of environment variable names.
func envNames(v string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		for i, r := range n {
			if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
				return nil, fmt.Errorf("want comma-separated environment variable names, and %q is not one", n)
			}
		}
		names = append(names, n)
	}
	return names, nil
}

// installer resolves ADE_WORKER_INSTALLER to "pip" or the path of uv.
func installer(v string) (string, error) {
	mode, err := oneOf(v, "auto", "uv", "pip")
	if err != nil {
		return "", err
	}
	if mode == "pip" {
		return "pip", nil
	}
	uv, lookErr := exec.LookPath("uv")
	switch {
	case lookErr == nil:
		return filepath.Abs(uv)
	case mode == "uv":
		return "", errors.New("want uv on PATH for ADE_WORKER_INSTALLER=uv (or use auto or pip)")
	}
	return "pip", nil
}

// tcpPorts reads comma-separated TCP port numbers; empty allows none.
func tcpPorts(v string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("want comma-separated TCP port numbers (1-65535), and %q is not one", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// absPaths reads comma-separated absolute paths.
func absPaths(v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			return nil, fmt.Errorf("want comma-separated absolute paths, and %q is not one", f)
		}
		out = append(out, filepath.Clean(f))
	}
	return out, nil
}

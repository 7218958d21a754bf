package settings

import (
	"os"
	"strings"
)

// ChildEnv is the environment for the processes a job starts. Jobs run
// configuration code that users wrote, so only an allow-list of this
// process's environment passes: the basics (PATH, HOME, locale, TZ, TMPDIR,
// user, CA bundles) and pip's and uv's settings. ADE_* settings, database
// URLs and credentials never do. PIP_CACHE_DIR defaults to PipCacheDir.
// Names in EnvPassthrough pass too.
func (s *Settings) ChildEnv() map[string]string {
	out := childEnv(os.Environ(), s.PipCacheDir)
	for _, name := range s.EnvPassthrough {
		if v, ok := os.LookupEnv(name); ok {
			out[name] = v
		}
	}
	return out
}

func childEnv(environ []string, pipCache string) map[string]string {
	out := make(map[string]string)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && childEnvAllowed(k) {
			out[k] = v
		}
	}
	if _, ok := out["PIP_CACHE_DIR"]; !ok && pipCache != "" {
		out["PIP_CACHE_DIR"] = pipCache
	}
	return out
}

// childEnvAllowed: the basics, locale settings, and pip's and uv's settings,
// which builds need (PIP_INDEX_URL, PIP_NO_INDEX, PIP_FIND_LINKS, ...).
func childEnvAllowed(name string) bool {
	switch name {
	case "PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME",
		"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE":
		return true
	}
	for _, p := range []string{"LC_", "PIP_", "UV_"} {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return true
		}
	}
	return false
}

package settings

import (
	"os"
	"path/filepath"
	"testing"
)

func TestChildEnv(t *testing.T) {
	for k, v := range map[string]string{
		"ADE_DATABASE_URL":      "postgresql://ade:secret@db/ade",
		"DATABASE_URL":          "postgresql://ade:secret@db/ade",
		"PGPASSWORD":            "secret",
		"PGHOST":                "db",
		"AWS_SECRET_ACCESS_KEY": "secret",
		"ADE_WORKER_ID":         "w1",
		"PATH":                  "/usr/bin:/bin",
		"HOME":                  "/home/ade",
		"LC_ALL":                "C.UTF-8",
		"TZ":                    "UTC",
		"PIP_NO_INDEX":          "1",
		"PIP_FIND_LINKS":        "/wheels",
		"UV_INDEX_URL":          "https://pypi.example/simple",
		"REQUESTS_CA_BUNDLE":    "/etc/ssl/ca.pem",
		"PIPX_HOME":             "/pipx", // not PIP_
		"MYPATH":                "/x",
	} {
		t.Setenv(k, v)
	}
	t.Setenv("PIP_CACHE_DIR", "")
	os.Unsetenv("PIP_CACHE_DIR")

	s := &Settings{PipCacheDir: "/data/cache/pip"}
	got := s.ChildEnv()
	tests := []struct {
		name string
		want string // "" means absent
	}{
		{"ADE_DATABASE_URL", ""},
		{"DATABASE_URL", ""},
		{"PGPASSWORD", ""},
		{"PGHOST", ""},
		{"AWS_SECRET_ACCESS_KEY", ""},
		{"ADE_WORKER_ID", ""},
		{"PIPX_HOME", ""},
		{"MYPATH", ""},
		{"PATH", "/usr/bin:/bin"},
		{"HOME", "/home/ade"},
		{"LC_ALL", "C.UTF-8"},
		{"PIP_NO_INDEX", "1"},
		{"PIP_FIND_LINKS", "/wheels"},
		{"UV_INDEX_URL", "https://pypi.example/simple"},
		{"REQUESTS_CA_BUNDLE", "/etc/ssl/ca.pem"},
		{"PIP_CACHE_DIR", "/data/cache/pip"},
		{"TZ", "UTC"},
	}
	for _, tt := range tests {
		v, ok := got[tt.name]
		if tt.want == "" && ok {
			t.Errorf("%s=%q reaches the job; it must not", tt.name, v)
		}
		if tt.want != "" && v != tt.want {
			t.Errorf("%s = %q (present %v), want %q", tt.name, v, ok, tt.want)
		}
	}

	t.Setenv("PIP_CACHE_DIR", "/own/cache")
	if got := s.ChildEnv()["PIP_CACHE_DIR"]; got != "/own/cache" {
		t.Errorf("PIP_CACHE_DIR = %q, want the operator's /own/cache", got)
	}
}

func TestChildEnvPassthrough(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy:3128")
	t.Setenv("PGPASSWORD", "secret")
	s := &Settings{EnvPassthrough: []string{"HTTPS_PROXY", "NOT_SET_ANYWHERE"}}
	env := s.ChildEnv()
	if env["HTTPS_PROXY"] != "http://proxy:3128" {
		t.Errorf("HTTPS_PROXY = %q, want it passed through", env["HTTPS_PROXY"])
	}
	if _, ok := env["NOT_SET_ANYWHERE"]; ok {
		t.Error("an unset passthrough name appeared in the child environment")
	}
	if _, ok := env["PGPASSWORD"]; ok {
		t.Error("PGPASSWORD reached the child environment")
	}
}

func TestEnvNames(t *testing.T) {
	got, err := envNames(" HTTPS_PROXY, no_proxy ,,X1")
	if err != nil || len(got) != 3 || got[0] != "HTTPS_PROXY" || got[1] != "no_proxy" || got[2] != "X1" {
		t.Errorf("envNames = %v, %v", got, err)
	}
	if _, err := envNames("GOOD,BAD-NAME"); err == nil {
		t.Error("envNames accepted BAD-NAME")
	}
}

func TestInstaller(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	if got, err := installer("auto"); err != nil || got != "pip" {
		t.Errorf("auto without uv = %q, %v; want pip", got, err)
	}
	if _, err := installer("uv"); err == nil {
		t.Error("uv without uv on PATH was accepted")
	}
	uv := filepath.Join(dir, "uv")
	if err := os.WriteFile(uv, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"auto", "uv"} {
		if got, err := installer(mode); err != nil || got != uv {
			t.Errorf("%s with uv = %q, %v; want %s", mode, got, err, uv)
		}
	}
	if got, _ := installer("pip"); got != "pip" {
		t.Errorf("pip = %q", got)
	}
	if _, err := installer("conda"); err == nil {
		t.Error("conda accepted")
	}
}

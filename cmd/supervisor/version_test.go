package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tt := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"tagged module", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"pseudo-version", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261206204033-ef78351abcde+dirty"}}, "v0.0.0-20261206204033-ef78351abcde+dirty"},
		{"devel with vcs", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("ef78351abcdef0123456789", "false")}, "ef78351abcde"},
		{"devel dirty", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("ef78351abcdef0123456789", "true")}, "ef78351abcde+dirty"},
		{"nothing recorded", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	} {
		if got := versionFromBuildInfo(&tt.bi); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := resolveVersion("v9"); got != "v9" {
		t.Errorf("a stamped version must win: %q", got)
	}
}

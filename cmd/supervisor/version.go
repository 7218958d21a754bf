package main

import "runtime/debug"

// resolveVersion is the version the binary reports (supervisor version,
// --version, ade_worker_build_info): stamped, the -ldflags value; else what
// the Go toolchain recorded from version control, so a plain `go build` in
// a checkout names its commit rather than "dev".
func resolveVersion(stamped string) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFromBuildInfo(bi)
}

// versionFromBuildInfo: the main module's version when it has one (a
// tagged checkout, or a pseudo-version from Go 1.24 on), else the VCS
// revision, "+dirty" when the tree had changes, else "dev".
func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+dirty"
	}
	return rev
}

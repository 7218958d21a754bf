// Package parallel sets how many tests of a package run at once.
package parallel

import (
	"flag"
	"fmt"
	"runtime"
)

// UnlessSet makes n (at least GOMAXPROCS) the number of parallel
// tests unless -parallel was given; call it from TestMain after
// flag.Parse. For packages whose tests mostly wait (on the database
// server, on child processes): go test's default, GOMAXPROCS, leaves a
// 2-core machine idle, and plain `go test ./...` then runs them as
// scripts/test.sh does.
func UnlessSet(n int) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", fmt.Sprint(max(n, runtime.GOMAXPROCS(0))))
	}
}

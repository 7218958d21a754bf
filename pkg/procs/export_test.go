package procs

import "time"

// DescendantsByScan exposes the fallback walk so tests can check that both
// ways of listing descendants agree.
var DescendantsByScan = descendantsByScan

// ViaShim makes c start through its LimitShim, as on a host that refuses
// the direct start, so tests cover both ways of confining a child.
func ViaShim(c Command) Command {
	c.viaShim = true
	return c
}

// ShortenDrain sets the output drain's timeout for the whole test binary
// (call it before the tests run): the test of a grandchild that escaped the
// group waits it out.
func ShortenDrain(d time.Duration) { drainTimeout = d }

// DrainTimeout is the output drain's timeout.
func DrainTimeout() time.Duration { return drainTimeout }

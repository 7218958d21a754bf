package procs

// DescendantsByScan exposes the fallback walk so tests can check that both
// ways of listing descendants agree.
var DescendantsByScan = descendantsByScan

// ViaShim makes c start through its LimitShim, as on a host that refuses
// the direct start, so tests cover both ways of confining a child.
func ViaShim(c Command) Command {
	c.viaShim = true
	return c
}

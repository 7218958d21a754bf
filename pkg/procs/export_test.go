package procs

// DescendantsByScan exposes the fallback walk so tests can check that both
// ways of listing descendants agree.
var DescendantsByScan = descendantsByScan

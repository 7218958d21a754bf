package main

import (
	"os"
	"runtime"
)

// slotsPerThread is how many job slots one thread of Go code serves when
// GOMAXPROCS is not set. A slot costs the supervisor a few milliseconds of
// CPU a job, mostly in short bursts between waits on the database and the
// jobrunner; with more threads than that work needs, Go keeps idle threads
// spinning for work at every wake-up. Measured (BENCHMARKS.md, "Round of
// 2026-12-07, night"), no-op jobs on two cores: one thread instead of two
// cut the supervisor's CPU a run by a fifth with two slots, and with eight
// by 40%, at a higher throughput. One thread served 105 no-op runs/s at
// 40% of a core; a real engine's slot asks far less.
const slotsPerThread = 8

// goMaxProcs is the GOMAXPROCS the worker runs with: the variable's when it
// is set (Go applied it already, and an operator's word wins), else one
// thread per slotsPerThread slots, never more than Go's own default
// (current, the CPUs or the container's CPU limit).
func goMaxProcs(concurrency, current int, envSet bool) int {
	if envSet {
		return current
	}
	return max(1, min(current, (concurrency+slotsPerThread-1)/slotsPerThread))
}

// setGoMaxProcs applies goMaxProcs for concurrency.
func setGoMaxProcs(concurrency int) {
	_, envSet := os.LookupEnv("GOMAXPROCS")
	runtime.GOMAXPROCS(goMaxProcs(concurrency, runtime.GOMAXPROCS(0), envSet))
}

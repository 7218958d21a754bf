//go:build linux && cgo

package store

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
// Both settings are needed: fixing the mmap threshold alone also fixes
// glibc's trim threshold low, and the heap is then trimmed more often.
static int ade_keep_sqlite_memory(void) {
	return mallopt(M_MMAP_THRESHOLD, 1 << 20) && mallopt(M_TRIM_THRESHOLD, 4 << 20);
}
#else
static int ade_keep_sqlite_memory(void) { return 1; }
#endif
*/
import "C"

import "sync"

var keepSQLiteMemoryOnce sync.Once

// keepSQLiteMemory stops glibc from handing SQLite's page-cache memory back
// to the kernel between statements. Every statement that sorts or groups
// opens a temporary b-tree whose page cache starts with one allocation of
// about 400 KB; glibc served it with mmap (or trimmed it from the heap)
// and the next statement paid a page fault for each of its pages again.
// That was about 40% of the SQL time of a run (BenchmarkRunLifecycle
// sqlite: 2.5 ms to 1.45 ms). It costs at most 4 MB of free memory kept.
func keepSQLiteMemory() {
	keepSQLiteMemoryOnce.Do(func() { C.ade_keep_sqlite_memory() })
}

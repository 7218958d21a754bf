//go:build !(linux && cgo)

package store

// keepSQLiteMemory is a glibc setting (see malloc_glibc.go).
func keepSQLiteMemory() {}

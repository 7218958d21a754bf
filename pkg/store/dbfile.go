package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrDatabaseFileChanged says the SQLite file this store opened is no longer
// the file at its path: it was deleted, or replaced (a restore, a copy
// over it). Writes would go to the orphaned file and new work would never
// be seen, so the worker must stop and start again against the real file.
var ErrDatabaseFileChanged = errors.New("database file changed")

// fileID is a file's identity: its device and inode.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no device and inode on this platform", path)
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// CheckFile reports ErrDatabaseFileChanged (wrapped, naming the path and the
// fix) when the SQLite file at the database path is not the one this store
// opened. It is nil on PostgreSQL, and nil when the path cannot be checked
// for another reason (a transient stat error is not proof of a swap).
func (s *Store) CheckFile() error {
	if s.file == nil {
		return nil
	}
	now, err := statID(s.watchTarget)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s was deleted while the supervisor had it open; "+
			"restore the file and restart the supervisor (it exits now so an orchestrator restarts it)", ErrDatabaseFileChanged, s.watchTarget)
	case err != nil:
		return nil
	case now != *s.file:
		return fmt.Errorf("%w: %s was replaced by another file while the supervisor had it open; "+
			"restart the supervisor against the new file (it exits now so an orchestrator restarts it)", ErrDatabaseFileChanged, s.watchTarget)
	}
	return nil
}

package supervisor

import (
	"errors"
	"sync/atomic"

	"github.com/ade-org/ade-worker/pkg/store"
	"github.com/ade-org/ade-worker/pkg/telemetry"
)

// Unready returns why the supervisor must not be considered ready (its
// database file was deleted or replaced), or nil. A readiness endpoint
// reports it (condition database_file); the supervisor also stops claiming and Run returns the
// same error, so the process exits non-zero.
func (s *Supervisor) Unready() error {
	if p := s.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// databaseFileChanged checks the SQLite file (a stat, on every turn of the
// claim loop and on every failed database call); when it changed it logs
// one error line, marks the supervisor unready and reports true: the caller
// stops claiming. Safe from several loops at once: only the first logs.
func (s *Supervisor) databaseFileChanged() bool {
	if s.fatal.Load() != nil {
		return true
	}
	err := s.queue.CheckFile()
	if !errors.Is(err, store.ErrDatabaseFileChanged) {
		return false
	}
	if !s.fatal.CompareAndSwap(nil, &err) {
		return true
	}
	s.health.Set(telemetry.CondDatabaseFile, false, err.Error())
	s.log.Error().Err(err).Msg("database file gone: no more claims; stopping")
	s.StopNow()
	return true
}

// fatalError is a reason the supervisor stopped by itself.
type fatalError = atomic.Pointer[error]

package supervisor

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// dbFileCheckInterval is how often the supervisor checks that its SQLite
// file is still the file at the database path.
const dbFileCheckInterval = 2 * time.Second

// Unready returns why the supervisor must not be considered ready (its
// database file was deleted or replaced), or nil. A readiness endpoint
// reports it; the supervisor also stops claiming and Run returns the
// same error, so the process exits non-zero.
func (s *Supervisor) Unready() error {
	if p := s.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// watchDatabaseFile checks the SQLite file until ctx ends; when it changed
// it logs one error line, marks the supervisor unready and calls stop.
func (s *Supervisor) watchDatabaseFile(ctx context.Context, stop func()) {
	t := time.NewTicker(dbFileCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.store.CheckFile(); errors.Is(err, store.ErrDatabaseFileChanged) {
			s.fatal.Store(&err)
			s.log.Error().Err(err).Msg("database file gone: no more claims; stopping")
			stop()
			return
		}
	}
}

// fatalError is a reason the supervisor stopped by itself.
type fatalError = atomic.Pointer[error]

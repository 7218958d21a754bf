package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// This file holds what the garbage collector (pkg/gc) reads: it never
// writes a row, since the ADE API owns the history of builds and runs.

// gcLockKey is the PostgreSQL advisory lock key of the garbage collector
// ("ade_gc" in ASCII).
const gcLockKey int64 = 0x6164655f6763

// TryGCLock takes the garbage collector's lock without waiting, so one pass
// runs at a time across every supervisor sharing the database. ok is false
// when another process holds it. release gives it back; the lock also ends
// with the process or its connection. PostgreSQL: a transaction advisory
// lock, in a transaction open for the pass; SQLite: an flock beside the
// database file (see the dialects' tryGCLock).
func (s *Store) TryGCLock(ctx context.Context) (release func(), ok bool, err error) {
	return s.dialect.tryGCLock(ctx, s)
}

func tryFileLock(path string) (func(), bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("gc lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("gc lock %s: %w", path, err)
	}
	// Closing releases the lock; the file stays, so every process locks
	// the same inode.
	return func() { f.Close() }, true, nil
}

// FinishedRun is a run in a terminal status, as the garbage collector
// reads it.
type FinishedRun struct {
	ID, WorkspaceID string
	Status          Status
	DoneAt          Time // completed_at, else cancelled_at
}

// RunCursor is where the next page of FinishedRuns starts.
type RunCursor struct {
	doneAt any // as the database returned it, so it compares exactly
	id     string
}

// RunsFrom is a cursor at the first run that finished at or after t (the
// zero time: the oldest).
func (s *Store) RunsFrom(t time.Time) RunCursor {
	if t.IsZero() {
		return RunCursor{}
	}
	return RunCursor{doneAt: s.ts(t)}
}

// finishedAt is the expression indexed by ix_runs_finished_gc.
const finishedAt = `COALESCE(completed_at, cancelled_at)`

// FinishedRuns returns up to limit runs that succeeded, failed or were
// cancelled before cutoff, from cur on, oldest first, and the cursor after
// them. It seeks a partial index, so its cost does not grow with the runs
// before the cursor.
func (s *Store) FinishedRuns(ctx context.Context, cutoff time.Time, cur RunCursor, limit int) ([]FinishedRun, RunCursor, error) {
	terminal := s.dialect.likely(`status IN ('succeeded', 'failed', 'cancelled')`)
	base := `SELECT id, workspace_id, status, ` + finishedAt + ` FROM runs WHERE ` + terminal + ` AND ` + finishedAt + ` < ?`
	if cur.doneAt == nil {
		return s.finishedRuns(ctx, base+` ORDER BY `+finishedAt+`, id LIMIT ?`, cur, s.ts(cutoff), limit)
	}
	// Two seeks rather than one (finished, id) > (t, id) condition, which
	// SQLite cannot seek on an expression index: the rest of the runs that
	// finished at the cursor's instant, then the later ones. Each costs
	// the rows it returns, even with a million runs finished at one instant.
	out, next, err := s.finishedRuns(ctx, base+` AND `+finishedAt+` = ? AND id > ? ORDER BY id LIMIT ?`,
		cur, s.ts(cutoff), cur.doneAt, cur.id, limit)
	if err != nil || len(out) == limit {
		return out, next, err
	}
	later, next, err := s.finishedRuns(ctx, base+` AND `+finishedAt+` > ? ORDER BY `+finishedAt+`, id LIMIT ?`,
		next, s.ts(cutoff), cur.doneAt, limit-len(out))
	return append(out, later...), next, err
}

// finishedRuns runs one query of FinishedRuns; cur is returned when it
// finds nothing.
func (s *Store) finishedRuns(ctx context.Context, q string, cur RunCursor, args ...any) ([]FinishedRun, RunCursor, error) {
	rows, err := s.db.WithContext(ctx).Raw(q, args...).Rows()
	if err != nil {
		return nil, cur, fmt.Errorf("list finished runs: %w", err)
	}
	defer rows.Close()
	var out []FinishedRun
	for rows.Next() {
		var r FinishedRun
		var raw any
		if err := rows.Scan(&r.ID, &r.WorkspaceID, &r.Status, &raw); err != nil {
			return nil, cur, fmt.Errorf("list finished runs: %w", err)
		}
		if b, ok := raw.([]byte); ok {
			raw = string(b) // compare as text, as stored
		}
		if err := r.DoneAt.Scan(raw); err != nil {
			return nil, cur, fmt.Errorf("run %s: %w", r.ID, err)
		}
		out = append(out, r)
		cur = RunCursor{doneAt: raw, id: r.ID}
	}
	return out, cur, rows.Err()
}

// GCBuild is a build as the garbage collector reads it.
type GCBuild struct {
	ID, WorkspaceID, ConfigurationID string
	Status                           Status
	CreatedAt, StartedAt, FinishedAt Time
}

// Builds returns up to limit builds with ids after afterID, in id order.
func (s *Store) Builds(ctx context.Context, afterID string, limit int) ([]GCBuild, error) {
	var out []GCBuild
	err := s.db.WithContext(ctx).Raw(`SELECT id, workspace_id, configuration_id, status, created_at, started_at, finished_at
		FROM builds WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	return out, nil
}

// BuildStatus returns a build's status, or ErrNotFound.
func (s *Store) BuildStatus(ctx context.Context, id string) (Status, error) {
	var b Build
	if err := first(s.db.WithContext(ctx).Raw(`SELECT id, status FROM builds WHERE id = ?`, id), &b); err != nil {
		return "", err
	}
	return b.Status, nil
}

// BuildsInUse maps the builds that queued or running runs need, and the
// configurations' active builds, to the reason they are needed. It reads
// only live runs (a partial index) and configurations.
func (s *Store) BuildsInUse(ctx context.Context) (map[string]string, error) {
	var pairs []struct{ ID, Why string }
	err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT build_id AS id, 'a ' || status || ' run needs it' AS why
		FROM runs WHERE status IN ('queued', 'running') AND build_id IS NOT NULL
		UNION ALL
		SELECT active_build_id AS id, 'active build of configuration ' || id AS why
		FROM configurations WHERE active_build_id IS NOT NULL`).Scan(&pairs).Error
	if err != nil {
		return nil, fmt.Errorf("find builds in use: %w", err)
	}
	used := make(map[string]string, len(pairs))
	for _, p := range pairs {
		if _, seen := used[p.ID]; !seen {
			used[p.ID] = p.Why
		}
	}
	return used, nil
}

// lastUse is the expression indexed by ix_runs_build_last_use.
const lastUse = `COALESCE(completed_at, started_at)`

// BuildLastUse returns when a run of the build last started or ended
// (invalid when none has). One index probe, however many runs it had.
func (s *Store) BuildLastUse(ctx context.Context, buildID string) (Time, error) {
	var t Time
	rows, err := s.db.WithContext(ctx).Raw(`SELECT `+lastUse+` FROM runs
		WHERE build_id = ? AND `+lastUse+` IS NOT NULL ORDER BY `+lastUse+` DESC LIMIT 1`, buildID).Rows()
	if err != nil {
		return t, fmt.Errorf("last use of build %s: %w", buildID, err)
	}
	defer rows.Close()
	if rows.Next() {
		var raw any
		if err := rows.Scan(&raw); err != nil {
			return t, err
		}
		if b, ok := raw.([]byte); ok {
			raw = string(b)
		}
		if err := t.Scan(raw); err != nil {
			return t, fmt.Errorf("last use of build %s: %w", buildID, err)
		}
	}
	return t, rows.Err()
}

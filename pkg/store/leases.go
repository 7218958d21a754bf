package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// RenewLeases extends the leases of every job worker holds under fences to
// lease from the database's now, in one statement per tick (on SQLite one
// per job kind, in one transaction: SQLite has no data-modifying CTEs and no
// round trips). It returns the fences that still hold; a fence missing from
// the answer lost its lease (re-queued after expiry, or taken away).
func (s *Store) RenewLeases(ctx context.Context, worker string, lease time.Duration, fences []Fence) (map[Fence]bool, error) {
	byKind := map[Kind][]Fence{}
	for _, f := range fences {
		byKind[f.Kind] = append(byKind[f.Kind], f)
	}
	var stmts []statement
	for _, kind := range []Kind{KindBuild, KindRun} {
		if fs := byKind[kind]; len(fs) > 0 {
			stmts = append(stmts, s.renewSQL(kind, worker, lease, fs))
		}
	}
	if len(stmts) == 0 {
		return map[Fence]bool{}, nil
	}
	rows, err := s.dialect.renewAll(s.db.WithContext(ctx), stmts)
	if err != nil {
		return nil, fmt.Errorf("renew %d leases: %w", len(fences), err)
	}
	held := make(map[Fence]bool, len(rows))
	for _, r := range rows {
		held[Fence{Kind: Kind(r.Kind), ID: r.ID, Worker: worker, Attempt: r.AttemptCount}] = true
	}
	return held, nil
}

// statement is one SQL statement with its arguments.
type statement struct {
	query string
	args  []any
}

// renewedRow is a job whose lease a renewal extended.
type renewedRow struct {
	Kind         string
	ID           string
	AttemptCount int
}

// renewSQL is the fenced lease renewal of fs (all of one kind): each job's
// row renews only while it is active, claimed by worker and at its attempt,
// that is, while no rescue took it. Whether the lease still runs is the
// holder's to say, on its own monotonic clock (the supervisor sends only
// leases it has not seen run out, and its jobrunner stops by the same
// clock): the database's clock stepped forward makes every lease look
// expired at once, and a renewal refused for that would stop every running
// job for nothing. A rescue racing the renewal re-checks the expiry under
// the row's lock, so one of the two wins. The jobs travel as one JSON
// argument, joined on the primary key.
func (s *Store) renewSQL(kind Kind, worker string, lease time.Duration, fs []Fence) statement {
	f := Fence{Kind: kind}
	type held struct {
		ID      string `json:"vid"`
		Attempt int    `json:"vattempt"`
	}
	list := make([]held, len(fs))
	for i, x := range fs {
		list[i] = held{x.ID, x.Attempt}
	}
	data, _ := json.Marshal(list)
	from, cond := s.dialect.jobListSQL()
	return statement{`UPDATE ` + f.table() + ` SET claim_expires_at = ` + s.dialect.laterSQL("?") + from + `
WHERE ` + cond + ` AND claimed_by = ? AND status = ?
RETURNING '` + string(kind) + `' AS kind, id, attempt_count`, []any{lease.Seconds(), string(data), worker, f.activeStatus()}}
}

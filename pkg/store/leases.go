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
// row renews only while it is active, claimed by worker, at its attempt, and
// its lease has not expired: an expired lease may be rescued any moment,
// and its jobrunner has stopped itself, so it is lost, never revived. The
// jobs travel as one JSON argument, joined on the primary key.
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
	AND claim_expires_at > ` + s.dialect.nowSQL() + `
RETURNING '` + string(kind) + `' AS kind, id, attempt_count`, []any{lease.Seconds(), string(data), worker, f.activeStatus()}}
}

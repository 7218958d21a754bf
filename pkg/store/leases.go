package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
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
	var parts []string
	var args []any
	for _, kind := range []Kind{KindBuild, KindRun} {
		if fs := byKind[kind]; len(fs) > 0 {
			q, a := s.renewSQL(kind, worker, lease, fs)
			parts, args = append(parts, q), append(args, a...)
		}
	}
	var rows []struct {
		Kind         string
		ID           string
		AttemptCount int
	}
	var err error
	switch {
	case len(parts) == 0:
		return map[Fence]bool{}, nil
	case len(parts) == 1:
		err = s.db.WithContext(ctx).Raw(parts[0], args...).Scan(&rows).Error
	case s.dialect.name() == "postgres":
		q := "WITH b AS (" + parts[0] + "), r AS (" + parts[1] + ") SELECT * FROM b UNION ALL SELECT * FROM r"
		err = s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error
	default:
		err = s.tx(ctx, func(tx *gorm.DB) error {
			_, bArgs := s.renewSQL(KindBuild, worker, lease, byKind[KindBuild])
			if err := tx.Raw(parts[0], bArgs...).Scan(&rows).Error; err != nil {
				return err
			}
			var more []struct {
				Kind         string
				ID           string
				AttemptCount int
			}
			err := tx.Raw(parts[1], args[len(bArgs):]...).Scan(&more).Error
			rows = append(rows, more...)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("renew %d leases: %w", len(fences), err)
	}
	held := make(map[Fence]bool, len(rows))
	for _, r := range rows {
		held[Fence{Kind: Kind(r.Kind), ID: r.ID, Worker: worker, Attempt: r.AttemptCount}] = true
	}
	return held, nil
}

// renewSQL is the fenced lease renewal of fs (all of one kind): each job's
// row renews only while it is active, claimed by worker, at its attempt, and
// its lease has not expired: an expired lease may be rescued any moment,
// and its jobrunner has stopped itself, so it is lost, never revived. The
// jobs travel as one JSON argument, joined on the primary key.
func (s *Store) renewSQL(kind Kind, worker string, lease time.Duration, fs []Fence) (string, []any) {
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
	return `UPDATE ` + f.table() + ` SET claim_expires_at = ` + s.dialect.laterSQL("?") + from + `
WHERE ` + cond + ` AND claimed_by = ? AND status = ?
	AND claim_expires_at > ` + s.dialect.nowSQL() + `
RETURNING '` + string(kind) + `' AS kind, id, attempt_count`, []any{lease.Seconds(), string(data), worker, f.activeStatus()}
}

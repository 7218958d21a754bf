package store

import (
	"context"
	"fmt"
)

// WorkspaceQueue is the runs of one workspace waiting or running: what
// `supervisor status --by-workspace` shows.
type WorkspaceQueue struct {
	WorkspaceID string
	Queued      int64 // status queued, claimable or not
	Claimable   int64 // claimable now (claimable.go), the cap aside
	Running     int64 // running across the fleet
	// OldestClaimable is when its longest-waiting claimable run became
	// available; Now is the database's clock that ages it.
	OldestClaimable Time
	Now             Time
}

// WorkspaceQueues lists the workspaces with runs queued or running, busiest
// first (most running, then most queued); workspace "" means every one.
// Its cost follows the live runs (partial indexes), not the history.
func (s *Store) WorkspaceQueues(ctx context.Context, workspace string) ([]WorkspaceQueue, error) {
	now := s.dialect.nowSQL()
	q := runQueue
	filter, args := "", []any{}
	if workspace != "" {
		filter, args = " AND workspace_id = ?", append(args, workspace)
	}
	var out []WorkspaceQueue
	err := s.db.WithContext(ctx).Raw(`SELECT w.workspace_id, w.queued, w.running,
	(SELECT COUNT(*) FROM `+q.from+` WHERE j.workspace_id = w.workspace_id AND `+q.claimable(now)+`) AS claimable,
	(SELECT MIN(`+q.since+`) FROM `+q.from+` WHERE j.workspace_id = w.workspace_id AND `+q.claimable(now)+`) AS oldest_claimable,
	`+now+` AS now
FROM (SELECT workspace_id, SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS queued,
		SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running
	FROM runs WHERE status IN ('queued', 'running')`+filter+` GROUP BY workspace_id) w
ORDER BY w.running DESC, w.queued DESC, w.workspace_id`, args...).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("read the queue by workspace: %w", err)
	}
	return out, nil
}

package supervisor

import (
	"context"
	"time"

	"github.com/ade-org/ade-worker/pkg/store"
)

// queue is what the claim loop and persist need from the database:
// *store.Store in production, a fake in the unit tests.
type queue interface {
	ClaimJobs(ctx context.Context, worker string, lease time.Duration, buildLimit, runLimit int) ([]store.ClaimedBuild, []store.ClaimedRun, error)
	NextAvailable(ctx context.Context) (time.Duration, bool, error)
	PendingJobs(ctx context.Context) (int64, error)
	JobStatus(ctx context.Context, kind store.Kind, id string) (store.Status, error)
	CheckFile() error
}

var _ queue = (*store.Store)(nil)

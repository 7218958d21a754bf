// Package tick holds the two waits every periodic loop here is made of, so
// that each loop says only what it does, not how it stops.
package tick

import (
	"context"
	"time"
)

// Every calls fn once per interval, and at once whenever wake receives (a
// nil wake never does), until ctx ends or fn returns false. The first call
// comes after one interval. Ticks missed while fn runs are dropped, not
// queued, so a slow fn never runs back to back.
func Every(ctx context.Context, interval time.Duration, wake <-chan struct{}, fn func(context.Context) bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		if !fn(ctx) || ctx.Err() != nil {
			return
		}
	}
}

// Sleep waits d, or until ctx ends; then it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	return ctx.Err()
}

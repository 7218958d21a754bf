package tick

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestEveryStopsWhenFnSaysSo(t *testing.T) {
	calls := 0
	Every(context.Background(), time.Millisecond, nil, func(context.Context) bool {
		calls++
		return calls < 3
	})
	if calls != 3 {
		t.Fatalf("fn ran %d times, want 3", calls)
	}
}

func TestEveryWakesAtOnce(t *testing.T) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	calls := 0
	// An hour's interval: only the wake-up can make the call.
	Every(context.Background(), time.Hour, wake, func(context.Context) bool {
		calls++
		return false
	})
	if calls != 1 {
		t.Fatalf("fn ran %d times, want 1", calls)
	}
}

func TestEveryEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	Every(ctx, time.Millisecond, nil, func(context.Context) bool {
		calls++
		cancel()
		return true
	})
	if calls != 1 {
		t.Fatalf("fn ran %d times after its context ended, want 1", calls)
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with an ended context = %v, want context.Canceled", err)
	}
}

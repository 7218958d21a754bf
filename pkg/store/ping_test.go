package store_test

import (
	"context"
	"testing"
)

func TestPing(t *testing.T) {
	t.Parallel()
	eachEnv(t, func(t *testing.T, e *env) {
		if err := e.s.Ping(context.Background()); err != nil {
			t.Fatalf("ping an open store: %v", err)
		}
		if err := e.s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.s.Ping(context.Background()); err == nil {
			t.Fatal("ping a closed store: no error")
		}
	})
}

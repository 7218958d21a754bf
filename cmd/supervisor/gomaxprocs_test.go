package main

import "testing"

func TestGoMaxProcs(t *testing.T) {
	for _, tc := range []struct {
		concurrency, current int
		envSet               bool
		want                 int
	}{
		{concurrency: 1, current: 2, want: 1},
		{concurrency: 2, current: 2, want: 1},
		{concurrency: 8, current: 16, want: 1},
		{concurrency: 9, current: 16, want: 2},
		{concurrency: 64, current: 16, want: 8},
		{concurrency: 64, current: 4, want: 4}, // never above Go's default
		{concurrency: 2, current: 8, envSet: true, want: 8},
		{concurrency: 64, current: 1, envSet: true, want: 1},
	} {
		if got := goMaxProcs(tc.concurrency, tc.current, tc.envSet); got != tc.want {
			t.Errorf("goMaxProcs(%d, %d, %v) = %d, want %d", tc.concurrency, tc.current, tc.envSet, got, tc.want)
		}
	}
}

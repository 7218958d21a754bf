package tick

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// fakeClock is a clock that only moves when slept on.
type fakeClock struct {
	now   time.Time
	slept []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(d time.Duration) {
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
}

func TestRetry(t *testing.T) {
	ms := time.Millisecond
	down := errors.New("connection refused")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		r        Retry
		failures int // tries that ask to go again before one does not
		rnd      float64
		tries    int
		gaveUp   bool
		slept    []time.Duration
	}{
		{"done at once", Retry{First: 100 * ms, Max: time.Second}, 0, 0, 1, false, nil},
		{"doubles up to max", Retry{First: 100 * ms, Max: 500 * ms}, 5, 0, 6, false,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms}},
		// Jitter shortens each wait by its share of the random draw.
		{"jitter shortens the waits", Retry{First: 100 * ms, Max: time.Second, Jitter: 0.5}, 3, 0.5, 4, false,
			[]time.Duration{75 * ms, 150 * ms, 300 * ms}},
		{"tries bound", Retry{First: 200 * ms, Max: 200 * ms, Tries: 3}, 10, 0, 3, true,
			[]time.Duration{200 * ms, 200 * ms}},
		// 100+200+400 = 700 ms slept; the next wait of 800 ms would end
		// after the bound at 1 s, so it is never started.
		{"never a wait past until", Retry{First: 100 * ms, Max: 5 * time.Second,
			Until: func() time.Time { return start.Add(time.Second) }}, 100, 0, 4, true,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms}},
		{"max below first waits first", Retry{First: 300 * ms, Max: 0}, 2, 0, 3, false,
			[]time.Duration{300 * ms, 300 * ms}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: start}
			r := tc.r
			r.Now, r.Sleep, r.Rand = c.Now, c.Sleep, func() float64 { return tc.rnd }
			var attempts []int
			tries, gaveUp, err := r.Do(func(attempt int) (bool, error) {
				attempts = append(attempts, attempt)
				if attempt <= tc.failures {
					return true, down
				}
				return false, nil
			})
			if tries != tc.tries || gaveUp != tc.gaveUp || !reflect.DeepEqual(c.slept, tc.slept) {
				t.Errorf("tries %d, gave up %v, slept %v; want %d, %v, %v", tries, gaveUp, c.slept, tc.tries, tc.gaveUp, tc.slept)
			}
			if wantErr := tc.gaveUp; wantErr != (err != nil) {
				t.Errorf("err = %v, want the last try's error only when giving up", err)
			}
			if len(attempts) != tries || attempts[0] != 1 || attempts[len(attempts)-1] != tries {
				t.Errorf("attempts passed = %v, want 1..%d", attempts, tries)
			}
		})
	}
}

// TestRetryUntilMoves: the bound is read before every wait, so a lease
// renewed meanwhile lets the retry go on.
func TestRetryUntilMoves(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	until := c.now.Add(250 * time.Millisecond)
	r := Retry{First: 100 * time.Millisecond, Max: 100 * time.Millisecond, Now: c.Now, Sleep: c.Sleep,
		Until: func() time.Time { return until }}
	tries, gaveUp, _ := r.Do(func(attempt int) (bool, error) {
		if attempt == 2 {
			until = until.Add(time.Second) // renewed
		}
		return attempt < 6, nil
	})
	if tries != 6 || gaveUp {
		t.Errorf("tries %d, gave up %v; want 6 tries ending by themselves", tries, gaveUp)
	}
}

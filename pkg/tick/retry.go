package tick

import (
	"math/rand/v2"
	"time"
)

// Retry is how a retried step waits between tries: waits growing from First
// by doubling up to Max, each shortened by a random share of up to Jitter
// (0 to 1) so that many retriers spread out, never a wait that would end
// after Until, and at most Tries tries when Tries > 0. Now, Sleep and Rand
// replace the clock, the wait and the jitter's source (tests).
type Retry struct {
	First, Max time.Duration
	Jitter     float64
	Tries      int
	// Until is read before each wait: a lease's end moves on as it is
	// renewed. Nil: no bound but Tries.
	Until func() time.Time

	Now   func() time.Time
	Sleep func(time.Duration)
	Rand  func() float64 // in [0, 1)
}

// Do calls try (attempt counts from 1) until it says not to go again, or
// the tries or the time are used up. It returns the number of tries, whether
// it gave up while try still asked for more (out of tries or time), and
// try's last error.
func (r Retry) Do(try func(attempt int) (again bool, err error)) (tries int, gaveUp bool, err error) {
	now, sleep, random := r.Now, r.Sleep, r.Rand
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = time.Sleep
	}
	if random == nil {
		random = rand.Float64
	}
	next, limit := r.First, max(r.Max, r.First)
	for attempt := 1; ; attempt++ {
		again, err := try(attempt)
		if !again {
			return attempt, false, err
		}
		wait := next - time.Duration(r.Jitter*random()*float64(next))
		if (r.Tries > 0 && attempt >= r.Tries) || (r.Until != nil && now().Add(wait).After(r.Until())) {
			return attempt, true, err
		}
		sleep(wait)
		next = min(2*next, limit)
	}
}

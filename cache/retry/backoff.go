package retry

import "time"

// Backoff returns the delay before retry number attempt (1-based):
// base*2^(attempt-1), capped at max, with "equal" jitter: the result is
// uniform in [d/2, d] where d is the capped delay. Equal rather than full
// jitter so that delays keep growing with the attempt count (full jitter can
// draw near-zero delays and hammer a cache that is down) while retries of
// many paths still spread out.
//
// rnd must return a float64 in [0,1), e.g. rand.Float64; values outside are
// clamped and a nil rnd means no jitter (d itself). Attempts < 1 count as 1,
// a negative base or max as 0. The result is never negative, never above
// max, and does not overflow for any attempt.
func Backoff(attempt int, base, max time.Duration, rnd func() float64) time.Duration {
	d := capped(attempt, base, max)
	if rnd == nil {
		return d
	}
	low := d / 2
	return low + jitter(d-low, rnd)
}

// capped computes min(base*2^(attempt-1), max) without overflowing.
func capped(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	if base >= max {
		return max
	}
	if attempt < 1 {
		attempt = 1
	}
	d := base
	// Doubling stops at the cap, so this runs at most ~63 times whatever
	// attempt is, and d never exceeds max (< MaxInt64/2 is checked first).
	for i := 1; i < attempt; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return d
}

// jitter returns a duration in [0, span] drawn from rnd.
func jitter(span time.Duration, rnd func() float64) time.Duration {
	r := rnd()
	if !(r > 0) { // also catches NaN
		return 0
	}
	if r >= 1 {
		return span
	}
	j := time.Duration(r * float64(span))
	// float64 rounding can push a huge span's product past span, or past
	// MaxInt64, whose conversion is platform-defined (negative on amd64).
	if j < 0 || j > span {
		return span
	}
	return j
}

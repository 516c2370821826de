package retry

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func constRnd(r float64) func() float64 { return func() float64 { return r } }

func TestBackoffNoJitter(t *testing.T) {
	const (
		s   = time.Second
		big = time.Duration(math.MaxInt64)
	)
	tests := []struct {
		attempt   int
		base, max time.Duration
		want      time.Duration
	}{
		{1, s, time.Minute, s},
		{2, s, time.Minute, 2 * s},
		{3, s, time.Minute, 4 * s},
		{6, s, time.Minute, 32 * s},
		{7, s, time.Minute, time.Minute}, // 64s capped
		{8, s, time.Minute, time.Minute},
		{1000, s, time.Minute, time.Minute},
		{math.MaxInt, s, time.Minute, time.Minute},
		{0, s, time.Minute, s},  // attempts < 1 count as 1
		{-7, s, time.Minute, s}, //
		{1, 2 * time.Minute, time.Minute, time.Minute},
		{63, 1, big, 1 << 62},
		{64, 1, big, big}, // 2^63 would overflow
		{1000, 1, big, big},
		{1000, big, big, big},
		{5, 0, time.Minute, 0},
		{5, -s, time.Minute, 0},
		{5, s, 0, 0},
		{5, s, -s, 0},
	}
	for _, tc := range tests {
		if got := Backoff(tc.attempt, tc.base, tc.max, nil); got != tc.want {
			t.Errorf("Backoff(%d, %v, %v, nil) = %v, want %v", tc.attempt, tc.base, tc.max, got, tc.want)
		}
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	const base, max = time.Second, time.Minute
	almost1 := math.Nextafter(1, 0)
	tests := []struct {
		name     string
		attempt  int
		r        float64
		want     time.Duration
		approxEq bool // r close to 1: allow rounding below d
	}{
		{"r=0", 3, 0, 2 * time.Second, false},
		{"r=0.5", 3, 0.5, 3 * time.Second, false},
		{"r=0.5 capped", 50, 0.5, 45 * time.Second, false},
		{"r just below 1", 3, almost1, 4 * time.Second, true},
		{"r=1 out of range", 3, 1, 4 * time.Second, false},
		{"r=7 out of range", 3, 7, 4 * time.Second, false},
		{"r negative", 3, -0.3, 2 * time.Second, false},
		{"r NaN", 3, math.NaN(), 2 * time.Second, false},
		{"r +Inf", 3, math.Inf(1), 4 * time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Backoff(tc.attempt, base, max, constRnd(tc.r))
			if tc.approxEq {
				if got > tc.want || got < tc.want-time.Microsecond {
					t.Fatalf("got %v, want just under %v", got, tc.want)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	// Near MaxInt64, float64 rounding of r*d could exceed d or wrap
	// negative; the result must still be inside [0, max].
	huge := time.Duration(math.MaxInt64)
	for _, r := range []float64{0, 0.5, 0.999, almost1} {
		for _, a := range []int{62, 63, 64, 1000} {
			c := capped(a, 1, huge)
			if d := Backoff(a, 1, huge, constRnd(r)); d < c/2 || d > c {
				t.Errorf("Backoff(%d, 1, MaxInt64, %v) = %d, want in [%d, %d]", a, r, d, c/2, c)
			}
		}
	}
}

// TestBackoffRandomBounds: for random inputs the result is never negative,
// never above max, and (equal jitter) never below half the capped delay.
func TestBackoffRandomBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		attempt := rng.IntN(2000) - 10
		base := time.Duration(rng.Int64N(int64(time.Hour)))
		max := time.Duration(rng.Int64())
		if rng.IntN(2) == 0 {
			max = time.Duration(rng.Int64N(int64(24 * time.Hour)))
		}
		d := capped(attempt, base, max)
		got := Backoff(attempt, base, max, rng.Float64)
		if got < 0 || got > max || got < d/2 || got > d {
			t.Fatalf("Backoff(%d, %v, %v) = %v (capped %v)", attempt, base, max, got, d)
		}
	}
}

var errTransient = errors.New("transient")

// retrySleep is a retry loop as the daemon might write it, sleeping with
// time.Sleep between attempts.
func retrySleep(op func() error, attempts int, base, max time.Duration, rnd func() float64) (int, error) {
	for a := 1; ; a++ {
		err := op()
		if err == nil || a == attempts {
			return a, err
		}
		time.Sleep(Backoff(a, base, max, rnd))
	}
}

// retryAfter is the same loop waiting with time.After, so a context can
// cut the wait short.
func retryAfter(ctx context.Context, op func() error, base, max time.Duration, rnd func() float64) (int, error) {
	for a := 1; ; a++ {
		if err := op(); err == nil {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(Backoff(a, base, max, rnd)):
		}
	}
}

// bounds returns the least and greatest total wait of the first n retries.
func bounds(n int, base, max time.Duration) (lo, hi time.Duration) {
	for a := 1; a <= n; a++ {
		d := capped(a, base, max)
		lo += d / 2
		hi += d
	}
	return lo, hi
}

func TestBackoffRetryLoopVirtualTime(t *testing.T) {
	const base, max = 100 * time.Millisecond, 10 * time.Second

	t.Run("sleep", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 12))
			fails := 12
			start := time.Now()
			n, err := retrySleep(func() error {
				if fails > 0 {
					fails--
					return errTransient
				}
				return nil
			}, 100, base, max, rng.Float64)
			elapsed := time.Since(start)
			if err != nil || n != 13 {
				t.Fatalf("n=%d err=%v", n, err)
			}
			lo, hi := bounds(12, base, max)
			if elapsed < lo || elapsed > hi {
				t.Fatalf("12 retries took %v of virtual time, want within [%v, %v]", elapsed, lo, hi)
			}
			t.Logf("12 retries: %v virtual (bounds %v..%v)", elapsed, lo, hi)
		})
	})

	t.Run("gives up after attempts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			n, err := retrySleep(func() error { return errTransient }, 5, base, max, constRnd(0))
			// 4 sleeps with r=0: exactly half of 100+200+400+800ms.
			if n != 5 || !errors.Is(err, errTransient) || time.Since(start) != 750*time.Millisecond {
				t.Fatalf("n=%d err=%v elapsed=%v", n, err, time.Since(start))
			}
		})
	})

	t.Run("after with deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(13, 14))
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			start := time.Now()
			n, err := retryAfter(ctx, func() error { return errTransient }, base, max, rng.Float64)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v", err)
			}
			if el := time.Since(start); el != time.Minute {
				t.Fatalf("stopped after %v, want exactly the 1m deadline", el)
			}
			// At least 5s per capped retry after the first few, at most 10s:
			// the attempt count within a minute is bounded both ways.
			if n < 8 || n > 20 {
				t.Fatalf("%d attempts in a minute", n)
			}
		})
	})

	t.Run("many concurrent retriers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const workers = 20
			var wg sync.WaitGroup
			elapsed := make([]time.Duration, workers)
			start := time.Now()
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 99))
					fails := w % 9
					retrySleep(func() error {
						if fails > 0 {
							fails--
							return errTransient
						}
						return nil
					}, 100, base, max, rng.Float64)
					elapsed[w] = time.Since(start)
				})
			}
			wg.Wait()
			distinct := map[time.Duration]bool{}
			for w, el := range elapsed {
				lo, hi := bounds(w%9, base, max)
				if el < lo || el > hi {
					t.Errorf("worker %d: %v, want within [%v, %v]", w, el, lo, hi)
				}
				distinct[el] = true
			}
			// Jitter spreads workers that failed equally often.
			if len(distinct) < workers/2 {
				t.Errorf("only %d distinct finish times among %d workers", len(distinct), workers)
			}
		})
	})
}

package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// Policy retries transient failures of a single operation.
type Policy struct {
	Attempts int                             // total tries, ≥ 1
	Delay    func(attempt int) time.Duration // wait after failed try number attempt (1-based)
}

// Default is the policy for requests to a cache: five tries, waiting
// 0.25–0.5 s, 0.5–1 s, 1–2 s and 2–4 s between them (Backoff from
// 500 ms, capped at 10 s).
var Default = Policy{
	Attempts: 5,
	Delay: func(n int) time.Duration {
		return Backoff(n, 500*time.Millisecond, 10*time.Second, rand.Float64)
	},
}

// Do calls op until it succeeds, fails permanently (cache.IsPermanent),
// the context ends or the attempts run out. A cancelled context is never
// retried.
func (p Policy) Do(ctx context.Context, op func() error) error {
	return p.do(ctx, op, nil)
}

// do is Do where final(err) also ends the tries.
func (p Policy) do(ctx context.Context, op func() error, final func(error) bool) error {
	attempts := max(p.Attempts, 1)
	var err error
	for i := 1; ; i++ {
		err = op()
		if err == nil || cache.IsPermanent(err) || ctx.Err() != nil ||
			errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || i >= attempts ||
			(final != nil && final(err)) {
			return err
		}
		var d time.Duration
		if p.Delay != nil {
			d = p.Delay(i)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

package retry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/internal/cachetest"
)

var errTransient = errors.New("503 SlowDown")

// policy waits a second between five tries.
var policy = retry.Policy{Attempts: 5, Delay: func(int) time.Duration { return time.Second }}

func count(calls []string, m string) int {
	n := 0
	for _, c := range calls {
		if c == m {
			n++
		}
	}
	return n
}

// Each request method is retried through errTransient failures, with the
// policy's waits between tries.
func TestLayerRetriesTransient(t *testing.T) {
	for _, m := range []string{"Exists", "Get", "Put", "List", "ListRoot", "Open", "Delete", "Barrier"} {
		synctest.Test(t, func(t *testing.T) {
			r := &cachetest.Recorder{Err: errTransient, Fail: map[string]int{m: 2}}
			w := policy.Wrap(r, nil)
			ctx := context.Background()
			start := time.Now()
			var err error
			switch m {
			case "Exists":
				_, err = w.Exists(ctx, "k")
			case "Get":
				_, err = w.Get(ctx, "k")
			case "Put":
				err = w.Put(ctx, "k", bytes.NewReader([]byte("body")), 4, "")
			case "List":
				err = w.(cache.Lister).List(ctx, "", func(cache.ObjectInfo) error { return nil })
			case "ListRoot":
				err = w.(cache.RootLister).ListRoot(ctx, func(cache.ObjectInfo) error { return nil })
			case "Open":
				_, err = w.(cache.Opener).Open(ctx, "k")
			case "Delete":
				err = w.(cache.Deleter).Delete(ctx, []string{"k"})
			case "Barrier":
				err = w.(cache.Barrierer).Barrier(ctx)
			}
			if err != nil || count(r.Seen(), m) != 3 || time.Since(start) != 2*time.Second {
				t.Errorf("%s: %v after %d calls and %v; want success on the 3rd after 2s", m, err, count(r.Seen(), m), time.Since(start))
			}
		})
	}
}

// A retried Put sends the whole body each time, from where it started.
func TestLayerPutRewinds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &cachetest.Recorder{Err: errTransient, Fail: map[string]int{"Put": 2}}
		body := bytes.NewReader([]byte("xxbody"))
		body.Seek(2, io.SeekStart)
		if err := policy.Wrap(r, nil).Put(context.Background(), "k", body, 4, ""); err != nil {
			t.Fatal(err)
		}
		if want := []string{"body", "body", "body"}; !slices.Equal(r.Bodies, want) {
			t.Errorf("bodies sent %q, want %q", r.Bodies, want)
		}
	})
}

// What is an answer, or cannot be repeated, is not retried.
func TestLayerDoesNotRetry(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		err  error
		call func(cache.Target) error
		m    string
	}{
		{"missing object", cache.ErrNotFound, func(w cache.Target) error { _, err := w.Get(ctx, "k"); return err }, "Get"},
		{"missing object (Open)", cache.ErrNotFound, func(w cache.Target) error { _, err := w.(cache.Opener).Open(ctx, "k"); return err }, "Open"},
		{"permanent", cache.Permanent(errors.New("403 AccessDenied")), func(w cache.Target) error { _, err := w.Exists(ctx, "k"); return err }, "Exists"},
		{"cancelled", context.Canceled, func(w cache.Target) error { _, err := w.Exists(ctx, "k"); return err }, "Exists"},
		{"unseekable body", errTransient, func(w cache.Target) error {
			return w.Put(ctx, "k", io.MultiReader(bytes.NewReader([]byte("b"))), 1, "")
		}, "Put"},
	}
	for _, tc := range cases {
		r := &cachetest.Recorder{Err: tc.err, Fail: map[string]int{tc.m: 5}}
		err := tc.call(policy.Wrap(r, nil))
		if !errors.Is(err, tc.err) || count(r.Seen(), tc.m) != 1 {
			t.Errorf("%s: %v after %d calls, want the error after 1", tc.name, err, count(r.Seen(), tc.m))
		}
	}
}

// failAfter lists n keys, then fails.
type failAfter struct {
	layer.Inner
	n, calls int
}

func (f *failAfter) List(_ context.Context, _ string, fn func(cache.ObjectInfo) error) error {
	f.calls++
	for range f.n {
		if err := fn(cache.ObjectInfo{Key: "k"}); err != nil {
			return err
		}
	}
	return errTransient
}

// A listing that failed after giving out objects is not tried again: a
// second try would give them out twice.
func TestLayerListingNotRepeated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, n := range []int{0, 3} {
			f := &failAfter{Inner: layer.Of(&cachetest.Recorder{}), n: n}
			seen := 0
			err := policy.Wrap(layer.Wrap(layer.Of(f), f), nil).(cache.Lister).List(context.Background(), "", func(cache.ObjectInfo) error { seen++; return nil })
			want := 1
			if n == 0 {
				want = policy.Attempts
			}
			if !errors.Is(err, errTransient) || f.calls != want || seen != n {
				t.Errorf("%d keys then a failure: %v, %d tries, %d keys seen; want %d tries", n, err, f.calls, seen, want)
			}
		}
	})
}

// Once stopped, a failing request is not tried again and its wait ends
// at once.
func TestLayerStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &cachetest.Recorder{Err: errTransient, Fail: map[string]int{"Exists": 100}}
		stop, cancel := context.WithCancel(context.Background())
		w := retry.Policy{Attempts: 5, Delay: func(int) time.Duration { return time.Hour }}.Wrap(r, stop)
		done := make(chan error)
		start := time.Now()
		go func() { _, err := w.Exists(context.Background(), "k"); done <- err }()
		time.Sleep(time.Minute)
		cancel()
		err := <-done
		if !errors.Is(err, errTransient) || count(r.Seen(), "Exists") != 1 || time.Since(start) != time.Minute {
			t.Errorf("stopped: %v after %d tries and %v; want the error after 1 try, at the stop", err, count(r.Seen(), "Exists"), time.Since(start))
		}
	})
}

// The wrapper keeps the inner target's capabilities.
func TestLayerCapabilities(t *testing.T) {
	for _, mask := range []int{0, 3, 5, 24, 32, 63} {
		if got := layer.Mask(policy.Wrap(cachetest.WithCaps(&cachetest.Recorder{}, mask), nil)); got != mask {
			t.Errorf("mask %06b became %06b", mask, got)
		}
	}
}

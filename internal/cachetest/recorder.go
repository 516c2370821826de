package cachetest

import (
	"context"
	"io"
	"strings"
	"sync"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/layer"
)

// Recorder is a target with every capability that records the calls
// reaching it, lists ListKeys keys, and answers each call with Err
// (when set) for its first Fail calls of that method.
type Recorder struct {
	mu       sync.Mutex
	Calls    []string
	ListKeys int
	Err      error
	Fail     map[string]int // method → calls left that fail with Err
	Bodies   []string       // bodies of the Puts, as read
}

// WithCaps returns r with only mask's capabilities (layer.Mask's bits).
func WithCaps(r *Recorder, mask int) cache.Target {
	in := layer.Of(r)
	for i, drop := range []func(){
		func() { in.Lister = nil }, func() { in.RootLister = nil }, func() { in.Opener = nil },
		func() { in.Deleter = nil }, func() { in.Barrierer = nil }, func() { in.Local = nil },
	} {
		if mask&(1<<i) == 0 {
			drop()
		}
	}
	return layer.Wrap(in, r)
}

// Seen returns the calls so far.
func (r *Recorder) Seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.Calls...)
}

func (r *Recorder) call(m string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Calls = append(r.Calls, m)
	if r.Fail[m] > 0 {
		r.Fail[m]--
		return r.Err
	}
	return nil
}

func (r *Recorder) Exists(context.Context, string) (bool, error) {
	err := r.call("Exists")
	return err == nil, err
}

func (r *Recorder) Put(_ context.Context, _ string, body io.Reader, _ int64, _ string) error {
	var b strings.Builder
	if body != nil {
		if _, err := io.Copy(&b, body); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.Bodies = append(r.Bodies, b.String())
	r.mu.Unlock()
	return r.call("Put")
}

func (r *Recorder) Get(context.Context, string) ([]byte, error) { return nil, r.call("Get") }

func (r *Recorder) String() string { return "fake://" }

func (r *Recorder) list(fn func(cache.ObjectInfo) error) error {
	for i := 0; i < r.ListKeys; i++ {
		if err := fn(cache.ObjectInfo{Key: "k"}); err != nil {
			return err
		}
	}
	return nil
}

func (r *Recorder) List(_ context.Context, _ string, fn func(cache.ObjectInfo) error) error {
	if err := r.call("List"); err != nil {
		return err
	}
	return r.list(fn)
}

func (r *Recorder) ListRoot(_ context.Context, fn func(cache.ObjectInfo) error) error {
	if err := r.call("ListRoot"); err != nil {
		return err
	}
	return r.list(fn)
}

func (r *Recorder) Open(context.Context, string) (io.ReadCloser, error) {
	if err := r.call("Open"); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("")), nil
}

func (r *Recorder) Delete(context.Context, []string) error { return r.call("Delete") }

func (r *Recorder) Barrier(context.Context) error { return r.call("Barrier") }

func (r *Recorder) IsLocal() bool {
	r.call("IsLocal")
	return true
}

var _ layer.Layer = (*Recorder)(nil)

package count

import (
	"context"
	"io"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
)

// fakeBase is the inner target of the tests: it records the calls that
// reach it, and lists listKeys keys.
type fakeBase struct {
	calls    []string
	listKeys int
}

func (f *fakeBase) Exists(context.Context, string) (bool, error) {
	f.calls = append(f.calls, "Exists")
	return true, nil
}

func (f *fakeBase) Put(context.Context, string, io.Reader, int64, string) error {
	f.calls = append(f.calls, "Put")
	return nil
}

func (f *fakeBase) Get(context.Context, string) ([]byte, error) {
	f.calls = append(f.calls, "Get")
	return nil, nil
}

func (f *fakeBase) String() string { return "fake://" }

func (f *fakeBase) list(fn func(cache.ObjectInfo) error) error {
	for i := 0; i < f.listKeys; i++ {
		if err := fn(cache.ObjectInfo{Key: "k"}); err != nil {
			return err
		}
	}
	return nil
}

type fakeLister struct{ f *fakeBase }

func (w fakeLister) List(_ context.Context, _ string, fn func(cache.ObjectInfo) error) error {
	w.f.calls = append(w.f.calls, "List")
	return w.f.list(fn)
}

type fakeRootLister struct{ f *fakeBase }

func (w fakeRootLister) ListRoot(_ context.Context, fn func(cache.ObjectInfo) error) error {
	w.f.calls = append(w.f.calls, "ListRoot")
	return w.f.list(fn)
}

type fakeOpener struct{ f *fakeBase }

func (w fakeOpener) Open(context.Context, string) (io.ReadCloser, error) {
	w.f.calls = append(w.f.calls, "Open")
	return io.NopCloser(strings.NewReader("")), nil
}

type fakeDeleter struct{ f *fakeBase }

func (w fakeDeleter) Delete(context.Context, []string) error {
	w.f.calls = append(w.f.calls, "Delete")
	return nil
}

type fakeBarrierer struct{ f *fakeBase }

func (w fakeBarrierer) Barrier(context.Context) error {
	w.f.calls = append(w.f.calls, "Barrier")
	return nil
}

type fakeLocal struct{ f *fakeBase }

func (w fakeLocal) IsLocal() bool {
	w.f.calls = append(w.f.calls, "IsLocal")
	return true
}

package cachetest

import (
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// Mem is an in-memory cache that records the order of writes and can
// fail on demand. For ordering and retry logic only: real caches are tested
// against MinIO and Nix.
type Mem struct {
	Mu      sync.Mutex
	Objects map[string][]byte
	Order   []string
	Checks  map[string]int // Exists calls per key
	FailPut func(key string, attempt int) error
	Puts    map[string]int
	// Modified is each object's Last-Modified; ExistsHook, if set, runs
	// before each Exists answer (to block or count).
	Modified   map[string]time.Time
	ExistsHook func(key string)
	Lists      int            // ListRoot calls
	Gets       map[string]int // Get calls per key
}

// NewMem returns an empty Mem.
func NewMem() *Mem {
	return &Mem{Objects: map[string][]byte{}, Checks: map[string]int{}, Puts: map[string]int{}, Gets: map[string]int{}, Modified: map[string]time.Time{}}
}

// Mem is a Target that lists, lists its root and deletes.
var (
	_ cache.Lister     = (*Mem)(nil)
	_ cache.RootLister = (*Mem)(nil)
	_ cache.Deleter    = (*Mem)(nil)
)

func (m *Mem) String() string { return "mem://" }

func (m *Mem) Exists(_ context.Context, key string) (bool, error) {
	if m.ExistsHook != nil {
		m.ExistsHook(key)
	}
	m.Mu.Lock()
	defer m.Mu.Unlock()
	m.Checks[key]++
	_, ok := m.Objects[key]
	return ok, nil
}

func (m *Mem) Get(_ context.Context, key string) ([]byte, error) {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	m.Gets[key]++
	b, ok := m.Objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, cache.ErrNotFound)
	}
	return b, nil
}

func (m *Mem) Put(_ context.Context, key string, body io.Reader, size int64, _ string) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	m.Mu.Lock()
	defer m.Mu.Unlock()
	m.Puts[key]++
	if m.FailPut != nil {
		if err := m.FailPut(key, m.Puts[key]); err != nil {
			return err
		}
	}
	if int64(len(b)) != size {
		return fmt.Errorf("size %d != %d", len(b), size)
	}
	m.Objects[key] = b
	m.Modified[key] = time.Now()
	m.Order = append(m.Order, key)
	return nil
}

// Index is the position of key's first write, or -1.
func (m *Mem) Index(key string) int {
	for i, k := range m.Order {
		if k == key {
			return i
		}
	}
	return -1
}

// List and Delete make Mem a Lister and Deleter, with Last-Modified
// from the (possibly fake) clock and the ETag S3 gives an object written
// by one PUT: the MD5 of its content.
func (m *Mem) List(_ context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	m.Mu.Lock()
	var objs []cache.ObjectInfo
	for k, b := range m.Objects {
		if strings.HasPrefix(k, prefix) {
			objs = append(objs, cache.ObjectInfo{Key: k, Size: int64(len(b)), LastModified: m.Modified[k], ETag: fmt.Sprintf("%x", md5.Sum(b))})
		}
	}
	m.Mu.Unlock()
	slices.SortFunc(objs, func(a, b cache.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) Delete(_ context.Context, keys []string) error {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	for _, k := range keys {
		delete(m.Objects, k)
	}
	return nil
}

// Remove deletes keys, as something outside nixpushd would.
func (m *Mem) Remove(keys ...string) {
	m.Delete(context.Background(), keys)
}

// ListRoot lists the top-level objects only.
func (m *Mem) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	m.Mu.Lock()
	m.Lists++
	m.Mu.Unlock()
	return m.List(ctx, "", func(o cache.ObjectInfo) error {
		if strings.Contains(o.Key, "/") {
			return nil
		}
		return fn(o)
	})
}

// Has reads under the lock, for tests that look while pushes run.
func (m *Mem) Has(key string) bool {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	_, ok := m.Objects[key]
	return ok
}

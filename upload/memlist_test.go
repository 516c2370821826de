package upload

import (
	"context"
	"slices"
	"strings"
)

// List and Delete make memTarget a Lister and Deleter, with Last-Modified
// from the (possibly fake) clock.
func (m *memTarget) List(_ context.Context, prefix string, fn func(ObjectInfo) error) error {
	m.mu.Lock()
	var objs []ObjectInfo
	for k, b := range m.objects {
		if strings.HasPrefix(k, prefix) {
			objs = append(objs, ObjectInfo{Key: k, Size: int64(len(b)), LastModified: m.modified[k]})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(objs, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func (m *memTarget) Delete(_ context.Context, keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.objects, k)
	}
	return nil
}

func (m *memTarget) remove(keys ...string) {
	m.Delete(context.Background(), keys)
}

// ListRoot lists the top-level objects only.
func (m *memTarget) ListRoot(ctx context.Context, fn func(ObjectInfo) error) error {
	m.mu.Lock()
	m.lists++
	m.mu.Unlock()
	return m.List(ctx, "", func(o ObjectInfo) error {
		if strings.Contains(o.Key, "/") {
			return nil
		}
		return fn(o)
	})
}

// has reads under the lock, for tests that look while pushes run.
func (m *memTarget) has(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.objects[key]
	return ok
}

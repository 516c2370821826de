package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/upload"
)

// Pins are named roots stored in the cache itself (pins/<NAME>, one store
// path a line), so that gc on every machine keeps their closures. The
// writer's policy cannot delete, so a removed pin is an empty object until
// gc (which may delete) clears it.
const PinPrefix = "pins/"

// Pin is one named root.
type Pin struct {
	Name         string
	Paths        []string // full store paths
	LastModified time.Time
}

// CheckPinName accepts names safe as object keys everywhere.
func CheckPinName(name string) error {
	ok := name != "" && len(name) <= 100 && name[0] != '.'
	for _, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("pin name %q: use 1-100 letters, digits, '.', '_' or '-', not starting with '.'", name)
	}
	return nil
}

// FormatPin is the content of a pin object.
func FormatPin(paths []string) []byte {
	var b bytes.Buffer
	for _, p := range slices.Compact(slices.Sorted(slices.Values(paths))) {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParsePin reads a pin object. Empty means removed.
func ParsePin(b []byte) ([]string, error) {
	var paths []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := nar.ParseStorePath(line); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		paths = append(paths, line)
	}
	return paths, nil
}

// ListPins reads every pin; removed (empty) pins are left out.
func ListPins(ctx context.Context, t cache.Target) ([]Pin, error) {
	l, ok := t.(cache.Lister)
	if !ok {
		return nil, fmt.Errorf("%s cannot be listed", t)
	}
	var objs []cache.ObjectInfo
	if err := l.List(ctx, PinPrefix, func(o cache.ObjectInfo) error { objs = append(objs, o); return nil }); err != nil {
		return nil, err
	}
	return readPins(ctx, t, objs)
}

func readPins(ctx context.Context, t cache.Target, objs []cache.ObjectInfo) ([]Pin, error) {
	var pins []Pin
	for _, o := range objs {
		if o.Size == 0 {
			continue
		}
		name := strings.TrimPrefix(o.Key, PinPrefix)
		b, err := t.Get(ctx, o.Key)
		if errors.Is(err, cache.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pin %s: %w", name, err)
		}
		paths, err := ParsePin(b)
		if err != nil {
			return nil, fmt.Errorf("pin %s (%s): %w", name, o.Key, err)
		}
		if len(paths) > 0 {
			pins = append(pins, Pin{Name: name, Paths: paths, LastModified: o.LastModified})
		}
	}
	return pins, nil
}

// SetPin points name at paths, whose closures must already be in the
// cache: p checks them there (under the cache lock, so no gc can sweep
// between the check and the write) and refuses if one is missing.
func SetPin(ctx context.Context, p *upload.Pusher, name string, paths []string) error {
	if err := CheckPinName(name); err != nil {
		return err
	}
	body := FormatPin(paths)
	return p.PublishReferring(ctx, PinPrefix+name, body, "text/plain", paths)
}

// RemovePin deletes pins/name when the credentials allow it, else empties
// it (which gc and ListPins read as removed).
func RemovePin(ctx context.Context, t cache.Target, name string) error {
	if err := CheckPinName(name); err != nil {
		return err
	}
	key := PinPrefix + name
	if ok, err := t.Exists(ctx, key); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("pin %q does not exist (see `nixpushd pin list`)", name)
	}
	if d, ok := t.(cache.Deleter); ok {
		if err := d.Delete(ctx, []string{key}); err == nil {
			return nil
		}
	}
	return t.Put(ctx, key, bytes.NewReader(nil), 0, "text/plain")
}

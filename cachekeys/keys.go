package cachekeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/nar"
)

// Prefix is where the records live in the cache.
const Prefix = "nixpushd/keys/"

// ContentType of a record.
const ContentType = "text/plain; charset=utf-8"

// ObjectKey is the cache key of name's record.
func ObjectKey(name string) string { return Prefix + name }

// validName reports whether name can be an object's last path element:
// names come from signatures, which anyone may write.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\: \t\n")
}

// ConflictError is a key whose name the cache already records with a
// different public key.
type ConflictError struct {
	Cache      string         // the cache, as its Target names itself
	Have, Want *nar.PublicKey // recorded, ours
	// Fix is the one fix the message ends with; "" is init's.
	Fix string
}

func (e *ConflictError) Error() string {
	fix := e.Fix
	if fix == "" {
		fix = "reuse that key (copy its secret key here) or pick a new name with --key-name"
	}
	return fmt.Sprintf("the cache %s already has a key named %s with a different public key (from another machine?): %s",
		e.Cache, e.Want.Name, fix)
}

// Lookup returns the public key the cache records for name, nil when it
// records none.
func Lookup(ctx context.Context, t cache.Target, name string) (*nar.PublicKey, error) {
	if !validName(name) {
		return nil, nil
	}
	b, err := t.Get(ctx, ObjectKey(name))
	if errors.Is(err, cache.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ObjectKey(name), err)
	}
	pk, err := parseRecord(name, b)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", ObjectKey(name), t, err)
	}
	return pk, nil
}

// parseRecord parses a record's content, which must name name.
func parseRecord(name string, b []byte) (*nar.PublicKey, error) {
	pk, err := nar.ParsePublicKey(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, errors.New(nar.ErrorReason(err))
	}
	if pk.Name != name {
		return nil, fmt.Errorf("holds the key %s, not one named %s", pk.Name, name)
	}
	return pk, nil
}

// Record makes sure the cache records pk under its name: written when no
// record exists (recorded is true), nothing when the same key is
// recorded, a *ConflictError when another key is. Each name is its own
// object, so two machines never read-modify-write one object; two
// machines racing to create one name with different keys both read it
// back after writing, and the one whose key did not stay is refused.
func Record(ctx context.Context, t cache.Target, pk *nar.PublicKey) (recorded bool, err error) {
	if !validName(pk.Name) {
		return false, fmt.Errorf("key name %q cannot be recorded: use a name without '/', ':' or spaces", pk.Name)
	}
	have, err := Lookup(ctx, t, pk.Name)
	if err != nil {
		return false, err
	}
	if have != nil {
		if !have.Key.Equal(pk.Key) {
			return false, &ConflictError{Cache: t.String(), Have: have, Want: pk}
		}
		return false, nil
	}
	body := []byte(pk.String() + "\n")
	if err := t.Put(ctx, ObjectKey(pk.Name), bytes.NewReader(body), int64(len(body)), ContentType); err != nil {
		return false, fmt.Errorf("record the key %s: %w", pk.Name, err)
	}
	have, err = Lookup(ctx, t, pk.Name)
	if err != nil {
		return false, err
	}
	if have == nil || !have.Key.Equal(pk.Key) {
		if have == nil {
			return false, fmt.Errorf("record the key %s: %s is gone right after writing it", pk.Name, ObjectKey(pk.Name))
		}
		return false, &ConflictError{Cache: t.String(), Have: have, Want: pk}
	}
	return true, nil
}

// List returns every key the cache records, sorted by name. A record that
// cannot be parsed is an error naming it. A cache that cannot list
// (cache.Lister) records nothing that List can find: nil, nil.
func List(ctx context.Context, t cache.Target) ([]*nar.PublicKey, error) {
	l, ok := t.(cache.Lister)
	if !ok {
		return nil, nil
	}
	var names []string
	err := l.List(ctx, Prefix, func(o cache.ObjectInfo) error {
		if name := strings.TrimPrefix(o.Key, Prefix); validName(name) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Prefix, err)
	}
	slices.Sort(names)
	var out []*nar.PublicKey
	for _, n := range names {
		pk, err := Lookup(ctx, t, n)
		if err != nil {
			return nil, err
		}
		if pk != nil {
			out = append(out, pk)
		}
	}
	return out, nil
}

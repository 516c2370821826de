package cache

import (
	"context"
	"errors"
	"io"
	"time"
)

// Target is a binary cache: a flat key space of immutable objects.
type Target interface {
	// Exists reports whether key is present.
	Exists(ctx context.Context, key string) (bool, error)
	// Put stores size bytes read from body under key. A Put that fails may
	// be retried with a fresh body; it must never leave a partial object
	// visible under key.
	Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error
	// Get reads a small object (narinfo, nix-cache-info).
	Get(ctx context.Context, key string) ([]byte, error)
	// String names the target for logs, without secrets.
	String() string
}

// ObjectInfo describes one object of a listing.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time // the server's clock, not ours
	// ETag is the server's entity tag, quotes removed ("" when the
	// backend has none). For an object written by one PUT without
	// server-side encryption it is the hex MD5 of its content, which is
	// how a listing tells that a narinfo is the very text seen before.
	ETag string
}

// Lister is a Target that can list its objects: gc, verify and the locks
// need it; the writer's policy (s3:ListBucket) allows it.
type Lister interface {
	// List calls fn for every object whose key starts with prefix, in
	// key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// RootLister lists only the objects at the top of the cache (narinfos and
// nix-cache-info), not nar/ and the rest: one request per thousand
// narinfos answers "which of these paths are cached?" for a whole closure.
type RootLister interface {
	ListRoot(ctx context.Context, fn func(ObjectInfo) error) error
}

// Barrierer is a Target whose writes reach the disk later, in batches:
// Barrier returns once everything written before it is durable. The
// Pusher calls it before publishing a narinfo, so that no narinfo can
// survive a power cut that its NAR or references did not.
type Barrierer interface {
	Barrier(ctx context.Context) error
}

// Opener is a Target that can stream a large object (verify --full).
type Opener interface {
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// Deleter is a Target that can delete objects. Only gc (and a stale lock's
// clean-up) deletes: the writer's policy has no s3:DeleteObject.
type Deleter interface {
	// Delete removes keys; a key that is already gone is not an error.
	Delete(ctx context.Context, keys []string) error
}

// Local is a Target on this machine's disk, where an existence check is
// one stat: cheaper than listing even many keys at once.
type Local interface {
	IsLocal() bool
}

// ErrNotFound is returned (wrapped) by Get and Open for a missing object.
var ErrNotFound = errors.New("object not found")

// Content types Nix's own stores use.
const (
	TypeNarInfo   = "text/x-nix-narinfo"
	TypeNAR       = "application/x-nix-nar"
	TypeCacheInfo = "text/x-nix-cache-info"
	TypeJSON      = "application/json"          // .ls listings, debuginfo/ links
	TypeLog       = "text/plain; charset=utf-8" // log/ build logs
)

// CacheInfo is the nix-cache-info written to a cache that lacks one.
const CacheInfo = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"

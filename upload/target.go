// Package upload puts NARs and narinfos into binary caches: the Target
// interface with its S3 and file:// implementations, compression, retries,
// and the Pusher that uploads closures in an order that keeps the cache
// valid at every instant.
package upload

import (
	"context"
	"fmt"
	"io"
	"strings"
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

// Content types Nix's own stores use.
const (
	TypeNarInfo   = "text/x-nix-narinfo"
	TypeNAR       = "application/x-nix-nar"
	TypeCacheInfo = "text/x-nix-cache-info"
)

// CacheInfo is the nix-cache-info written to a cache that lacks one.
const CacheInfo = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"

// Options say how to reach a cache, beyond its URL.
type Options struct {
	// CAFile is a PEM file of certificates trusted for an https S3
	// endpoint, in addition to the system roots.
	CAFile string
	// Env holds variables (AWS_ACCESS_KEY_ID, …) read from a credentials
	// file. They are consulted before the process environment and never
	// exported to it, so child processes do not inherit secrets.
	Env map[string]string
	// EnvFile names the file Env was read from, for messages that say
	// where the credentials came from.
	EnvFile string
}

// Open returns the target for a cache URL: s3://BUCKET?… or file:///DIR.
func Open(ctx context.Context, rawURL string) (Target, error) {
	return OpenWith(ctx, rawURL, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, rawURL string, opts Options) (Target, error) {
	switch {
	case strings.HasPrefix(rawURL, "s3://"):
		cfg, err := ParseS3URL(rawURL)
		if err != nil {
			return nil, err
		}
		return NewS3(ctx, cfg, opts)
	case strings.HasPrefix(rawURL, "file://"):
		return NewFile(strings.TrimPrefix(rawURL, "file://"))
	default:
		return nil, fmt.Errorf("cache URL %q: use s3://BUCKET?endpoint=HOST:PORT or file:///DIR", rawURL)
	}
}

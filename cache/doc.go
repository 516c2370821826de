// Package cache is the contract between nixpushd and a binary cache's
// storage: a flat key space of immutable objects (Target) with optional
// capabilities (listing, streaming, deleting, durability barriers),
// ObjectInfo and ErrNotFound, and the one classification of failures
// (transient, permanent, configuration) that every caller retries by.
//
// It knows nothing of Nix beyond the content types and the nix-cache-info
// text, and nothing of any one backend: cache/file and cache/s3 implement
// Target (cache/http too, read-only: no listing, no writes), cache/cacheurl
// picks one from a URL, and cache/retry wraps one
// with the retry policy.
package cache

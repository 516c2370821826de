// Package cachelock coordinates the writers of one cache with its
// garbage collector through lock objects in the cache itself (locks/),
// so that pushers on many machines and gc need nothing in common but the
// bucket. Pushers hold shared locks while they publish; gc holds an
// exclusive one while it marks and sweeps. lock.go states the protocol
// and the invariant pushers rely on.
//
// It knows cache.Target and nothing of Nix or of any one backend.
package cachelock

// Package sema bounds the requests in flight to a cache.Target: Wrap
// returns a Target (a cache/layer layer, with the inner target's exact
// capabilities) whose every request first takes one slot of a shared
// semaphore and gives it back when the request returns.
//
// A listing holds its slot for the whole listing, callbacks included;
// Open holds it until the object starts to arrive (Open returns), not
// while the caller reads it, so that a reader kept open never starves
// the requests its reading leads to. Retries sit outside this layer, so
// a request waiting out a backoff holds no slot.
//
// A caller that must know when its request left (not when it asked),
// as the pusher's presence checks do to date their answers, passes a
// Trace in the context (WithTrace).
//
// It knows cache.Target and golang.org/x/sync/semaphore, nothing else.
package sema

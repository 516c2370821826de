// Package queue is nixpushd's durable upload queue: a bbolt database of store
// paths and their upload state.
//
// Every state change (item record, its index entries and the per-state
// counters) is made in a single bbolt transaction that is fsynced on commit,
// so a crash at any moment leaves either the old or the new state, never a
// mix. A method that returns nil has made its change durable.
//
// Layout (all keys are raw bytes):
//
//	bucket  key                     value        holds
//	items   path                    JSON Item    every item
//	states  state|listTime|path     -            every item (List, Requeue, PruneDone)
//	due     nextAttempt|path        -            every Pending item (NextDue)
//	wait    nextAttempt|path        enqueued     Pending, not yet known to be due
//	ready   enqueued|path           nextAttempt  Pending, known to be due (Claim)
//	counts  state                   uint64       item count per state (Stats)
//	kv      key                     value        daemon state (Meta/SetMeta)
//	schema  "version"               "2"
//
// A time is the 8-byte big-endian unix-nano value, clamped to [0, MaxInt64],
// so byte order is time order. In states, state is one byte (p, i, d, f) and
// listTime is Enqueued for Pending and InFlight items and Updated for Done
// and Failed ones: each state's items lie together in the order List returns
// them (Done and Failed read backwards, newest first).
//
// A Pending item is in exactly one of wait and ready: new items (zero
// NextAttempt) go straight to ready, Claim moves items whose NextAttempt has
// passed from wait to ready (once each) and then takes the oldest from ready,
// so neither Claim nor NextDue, which run on every turn of the daemon's
// dispatcher, has to look at items that are not due.
//
// Schema version 1 (nixpushd before this layout) had a bucket per state
// (pending, inflight, done, failed) where version 2 has states; every other
// bucket is the same in both. Open migrates a version 1 file in one
// transaction: it fills states from the items, deletes the four buckets and
// sets the version to 2. The version bump makes an older nixpushd refuse the
// migrated file rather than use it with stale indexes.
//
// A Queue is safe for concurrent use; bbolt serialises writers.
//
// It knows durability and states, nothing of Nix, caches or uploads.
package queue

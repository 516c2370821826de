// Package upload pushes closures of store paths into a binary cache so
// that the cache is valid at every instant: a path's NAR goes up before
// its narinfo, and its narinfo only after each of its references was seen
// in the cache by a request sent after the narinfo became ready, or was
// written by this process during the pushes going on now, in the same
// lock session (Presence.Written: a burst's paths refer to each other).
//
// It owns the scheduling (a bounded pool fed leaves first, CPU and network
// slots apart), the NAR files (serialised, hashed and compressed once, in
// memory or a bounded temp dir), publishing (narinfos in batches, under a
// shared cache lock), and Presence, the shared answers to "is this key in
// the cache?".
//
// Nothing it writes is weaker than what it replaces: an unsigned Pusher
// (no Key) never overwrites a narinfo carrying signatures the new one
// lacks, whether forced (PushForce fails the path with ErrWeaker) or
// written by someone else since it was found missing (the signed one
// stays). A signing Pusher's narinfo is signed by its Key and carries the
// local store's signatures; a caller that wants to keep other keys'
// signatures of the old narinfo (verify --repair) passes them in Sigs.
// With SignPresent, "already cached" means cached and signed by Key: a
// cached narinfo without a valid signature by it gets one added (every
// other line and signature kept, rewritten under the shared lock), unless
// it describes other content than the local path (Result.NotSigned).
//
// It reaches the cache only through cache.Target and its capabilities,
// and knows nothing of S3, files or URLs.
package upload

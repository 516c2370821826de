// Package lifecycle keeps a binary cache healthy over its whole life:
// closure-safe garbage collection (gc), named roots stored in the cache
// (pins), and verification with repair (verify). Verify lists the cache,
// or walks the closures of given roots where it cannot be listed (an
// http(s):// cache, no s3:ListBucket). Repair is planned (PlanRepair: per
// path the smallest change, never a narinfo weaker than the one it
// replaces, refused as a whole when a rewrite lacks its key) and then
// executed (ExecuteRepair). Realisations and debug-info links are
// written again from the local store after the narinfos and NARs they
// point at, or deleted when nothing local explains them (which needs
// credentials that may delete). It reads formats through nar and reaches the
// cache through cache.Target and its capabilities, counting requests with
// cache/count.
//
// It knows formats through nar and caches only through cache.Target and
// its capabilities: nothing of S3 or files.
package lifecycle

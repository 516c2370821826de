// Package count counts the requests a caller sends to a cache.Target, by
// wrapping it (as restic wraps its backends): Wrap returns a Target that
// forwards every call to the inner one and a Counter that sums them up.
// gc and verify report their "N requests" from it instead of counting by
// hand at each call.
//
// What counts: a listing (List, ListRoot) is one request per thousand
// keys listed, rounded as keys/1000 + 1 (S3's page size; an empty
// listing is one request too), and every other call (Exists, Put, Get,
// Open, Delete, Barrier) is one. Every call counts, retried attempts
// included: a retry policy around the wrapper sees each attempt as a
// call of its own. String and IsLocal are not requests.
//
// The wrapper has exactly the inner target's capabilities. Callers find
// a capability by type assertion (t.(cache.Deleter)), so a wrapper that
// always had Delete, failing when the inner target lacks it, would make
// those assertions lie: gc would take a listing-only target for one it
// may delete from, and upload would take every target for a local one.
// Wrap therefore picks, at construction, one of 64 wrapper types, one
// for each combination of the six optional capabilities (Lister,
// RootLister, Opener, Deleter, Barrierer, Local); each type embeds the
// forwarding methods of its capabilities and no others. The types are
// generated (gen.go, `go generate ./cache/count/`), and a test checks
// every combination both ways. Methods of the inner target beyond
// cache.Target and its capabilities are not forwarded.
//
// It knows cache.Target and nothing of any one backend.
package count

//go:generate go run gen.go

// Package count counts the requests a caller sends to a cache.Target, by
// wrapping it (a cache/layer layer): Wrap returns a Target that forwards
// every call to the inner one and a Counter that sums them up. gc and
// verify report their "N requests" from it instead of counting by hand
// at each call.
//
// What counts: a listing (List, ListRoot) is one request per thousand
// keys listed, rounded as keys/1000 + 1 (S3's page size; an empty
// listing is one request too), and every other call (Exists, Put, Get,
// Open, Delete, Barrier) is one. Every call counts, retried attempts
// included: a retry layer around the wrapper sees each attempt as a
// call of its own. String and IsLocal are not requests.
//
// The wrapper has exactly the inner target's capabilities (see
// cache/layer for why).
//
// It knows cache.Target and nothing of any one backend.
package count

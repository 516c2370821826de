// Package layer stacks wrappers on a cache.Target, as restic stacks its
// backends: request counting (cache/count), the bound on requests in
// flight (cache/sema) and retries (cache/retry) each wrap the target
// instead of being done by hand at every call.
//
// A wrapper must have exactly its inner target's optional capabilities.
// Callers find a capability by type assertion (t.(cache.Deleter)), so a
// wrapper that always had Delete, failing when the inner target lacks
// it, would make those assertions lie: gc would take a listing-only
// target for one it may delete from, and the pusher would take every
// target for a local one. Wrap therefore returns, for the inner target's
// combination of the six capabilities (Lister, RootLister, Opener,
// Deleter, Barrierer, Local), a value of a type that has those methods
// and no others. The 64 cases are generated (gen.go,
// `go generate ./cache/layer/`), and a test checks every combination
// both ways.
//
// A layer implements every method (Layer) but is only ever called for
// those its inner target has. It embeds Inner, which forwards whatever
// the layer does not override. Methods of the inner target beyond
// cache.Target and its capabilities are not forwarded. A layer is a
// pointer, so that wrapped targets stay comparable (==), as callers
// compare the targets they hold.
//
// It knows cache.Target and nothing of any one backend or of Nix.
package layer

//go:generate go run gen.go

// Package retry is nixpushd's one retry policy: how often and how long to
// wait before asking a cache again after a transient failure, by the
// classification of package cache. Policy.Wrap applies it to every
// request of a cache.Target (a cache/layer layer); push, gc, verify and
// init send through it. The daemon's durable queue spaces its retries
// with Backoff too.
//
// It knows cache.Target's contract, nothing of what is stored.
package retry

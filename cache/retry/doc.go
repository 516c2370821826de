// Package retry is nixpushd's one retry policy: how often and how long to
// wait before asking a cache again after a transient failure, by the
// classification of package cache. Push, gc, verify and init retry with
// it; the daemon's durable queue spaces its retries with Backoff too.
//
// It knows nothing of what is retried.
package retry

// Package metrics exposes the daemon's work to Prometheus: what it
// uploaded, skipped and failed, the queue's shape, existence checks,
// retries, and the last results of gc and verify (which run as separate
// commands and leave them in the state directory, see WriteLastRun).
//
// Counters are fed as things happen (Observe, Skip, Retry, QueueRetry);
// everything that has a current value elsewhere (the queue, the presence
// cache, the last-run files) is read at scrape time through the callbacks
// of Options, so there is nothing to keep in sync.
//
// The counting methods (Observe, Skip, Retry, CountRetries, QueueRetry)
// are safe on a nil *Metrics and do nothing: the daemon can call them
// unconditionally when metrics are off.
//
// It reads counters and results that others keep; it decides nothing.
package metrics

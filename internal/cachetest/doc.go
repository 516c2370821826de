// Package cachetest holds what the tests of cache users and backends
// share: Mem, an in-memory Target for ordering and retry logic, and Suite,
// the behaviour every real backend must show.
package cachetest

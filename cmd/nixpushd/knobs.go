package main

import (
	"os"
	"strconv"
	"time"
)

// Test knobs: environment variables that the integration tests set on
// the binary, read here and nowhere else, and handed to the library
// packages as options.
var knobs = struct {
	// LockStale is NIXPUSHD_LOCK_STALE (a Go duration): how soon a cache
	// lock of a killed holder goes stale; 0 = cachelock.DefaultStale.
	LockStale time.Duration
	// PartSize is NIXPUSHD_PART_SIZE (bytes, at least S3's 5 MiB): the
	// smallest multipart part, lowered to test multipart with small NARs.
	PartSize int64
	// PureGoXZ is NIXPUSHD_XZ=ulikunitz: xz without liblzma.
	PureGoXZ bool
	// ProbeEvery is NIXPUSHD_PROBE_EVERY (a Go duration): how often a
	// degraded cache is checked again; 0 = once a minute.
	ProbeEvery time.Duration
}{
	LockStale: func() time.Duration {
		d, err := time.ParseDuration(os.Getenv("NIXPUSHD_LOCK_STALE"))
		if err != nil || d <= 0 {
			return 0
		}
		return d
	}(),
	PartSize: func() int64 {
		v, err := strconv.ParseInt(os.Getenv("NIXPUSHD_PART_SIZE"), 10, 64)
		if err != nil || v < 5<<20 {
			return 0
		}
		return v
	}(),
	PureGoXZ: os.Getenv("NIXPUSHD_XZ") == "ulikunitz",
	ProbeEvery: func() time.Duration {
		d, err := time.ParseDuration(os.Getenv("NIXPUSHD_PROBE_EVERY"))
		if err != nil || d <= 0 {
			return 0
		}
		return d
	}(),
}

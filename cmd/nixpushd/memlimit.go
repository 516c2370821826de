package main

import (
	"os"
	"runtime/debug"
)

// softMemoryLimit makes the garbage collector work harder as the heap
// nears it, so that peak RSS follows what is live (the closure, the paths
// in flight) rather than twice that. It is soft: a bigger live heap is
// allowed, only collected more often. GOMEMLIMIT overrides it.
const softMemoryLimit = 160 << 20

func init() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
}

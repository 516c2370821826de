package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a CPU profile of the whole process to the file
// named by NIXPUSHD_CPU_PROFILE (a test knob for benchmarks, not a
// user-facing flag), and returns the function that ends it. Without the
// variable it does nothing.
func startCPUProfile() func() {
	file := os.Getenv("NIXPUSHD_CPU_PROFILE")
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nixpushd: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "nixpushd: cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// BenchmarkNarListingsCost pushes the same small-path DAG as
// BenchmarkSmallPaths5000 (NIXPUSHD_BENCH_LEAVES leaves, default 5000)
// twice into fresh buckets, with --nar-listings=false and =true, and
// prints time and requests side by side.
func BenchmarkNarListingsCost(b *testing.B) {
	m := requireBench(b)
	leaves := 5000
	if s := os.Getenv("NIXPUSHD_BENCH_LEAVES"); s != "" {
		leaves, _ = strconv.Atoi(s)
	}
	mids, shared := max(leaves/100, 1), 10
	secret, _ := testenv.GenerateKey(b, b.TempDir(), "ls-bench-1")
	p := testenv.StartProxy(b, m.Endpoint)
	for i := 0; i < b.N; i++ {
		paths := lbEval(b, lbWideExpr, "--arg", "leaves", strconv.Itoa(leaves), "--arg", "mids", strconv.Itoa(mids), "--arg", "shared", strconv.Itoa(min(shared, leaves)))
		top := paths[0]
		runs := map[string]lbRun{}
		// off, on, off, on: the second of each is the figure (warm caches).
		for _, round := range []int{0, 1} {
			for _, on := range []string{"false", "true"} {
				c := m.NewCache(b, "")
				r := lbExec(b, p, bin, writerEnv(c), "push", "--quiet", "--to", lbS3URL(c, p), "--compression", "xz", "--secret-key-file", secret, "--nar-listings="+on, top)
				if got := lbNarInfos(b, c); got != len(paths) {
					b.Fatalf("%d narinfos, want %d\n%s", got, len(paths), r.out)
				}
				ls := 0
				for k := range c.Objects(b) {
					if strings.HasSuffix(k, ".ls") {
						ls++
					}
				}
				if (on == "true") != (ls == len(paths)) {
					b.Fatalf("--nar-listings=%s: %d .ls for %d paths", on, ls, len(paths))
				}
				if round == 1 {
					runs[on] = r
				}
			}
		}
		off, on := runs["false"], runs["true"]
		fmt.Printf("\n%d small paths, xz, one-shot push into local MinIO\n", len(paths))
		fmt.Printf("%-22s %8s %8s %10s %10s\n", "", "wall s", "CPU s", "requests", "PUTs")
		for _, row := range []struct {
			name string
			r    lbRun
		}{{"--nar-listings=false", off}, {"--nar-listings=true", on}} {
			fmt.Printf("%-22s %8.2f %8.2f %10d %10d\n", row.name, row.r.m.wall.Seconds(), row.r.m.cpu.Seconds(), row.r.counts[testenv.KindTotal], row.r.counts[testenv.KindPutObject])
		}
		fmt.Printf("%-22s %8.2fx %7.2fx %9.2fx %9.2fx\n", "on / off", on.m.wall.Seconds()/off.m.wall.Seconds(), on.m.cpu.Seconds()/off.m.cpu.Seconds(),
			float64(on.counts[testenv.KindTotal])/float64(off.counts[testenv.KindTotal]), float64(on.counts[testenv.KindPutObject])/float64(off.counts[testenv.KindPutObject]))
	}
}

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// formatVariants are the push flags of BenchmarkFormatsCost: every
// optional file off (the base of each ratio), each one on alone, and the
// defaults.
var formatVariants = []struct{ name, flags string }{
	{"all off", "--nar-listings=false --index-debug-info=false --build-logs=false --realisations=false"},
	{"+nar-listings", "--nar-listings=true --index-debug-info=false --build-logs=false --realisations=false"},
	{"+index-debug-info", "--nar-listings=false --index-debug-info=true --build-logs=false --realisations=false"},
	{"+build-logs", "--nar-listings=false --index-debug-info=false --build-logs=true --realisations=false"},
	{"+realisations", "--nar-listings=false --index-debug-info=false --build-logs=false --realisations=true"},
	{"defaults", ""},
}

// BenchmarkFormatsCost measures what each optional file of issue #22
// costs a one-shot push (xz, local MinIO through the counting proxy), on
// the two shapes of the Performance page: the 5,051-small-path DAG of
// BenchmarkSmallPaths5000 (NIXPUSHD_BENCH_LEAVES leaves, default 5000)
// and the >200 MB closure of real files of BenchmarkVsSeeds. Each
// variant pushes into a fresh bucket, after one warm-up push; it prints
// wall time, CPU and requests as ratios to "all off".
func BenchmarkFormatsCost(b *testing.B) {
	m := requireBench(b)
	leaves := 5000
	if s := os.Getenv("NIXPUSHD_BENCH_LEAVES"); s != "" {
		leaves, _ = strconv.Atoi(s)
	}
	secret, _ := testenv.GenerateKey(b, b.TempDir(), "formats-bench-1")
	p := testenv.StartProxy(b, m.Endpoint)
	for i := 0; i < b.N; i++ {
		small := lbEval(b, lbWideExpr, "--arg", "leaves", strconv.Itoa(leaves), "--arg", "mids", strconv.Itoa(max(leaves/100, 1)), "--arg", "shared", strconv.Itoa(min(10, leaves)))
		big := testenv.BuildExpr(b, corpusExpr)[0]
		bigPaths, _ := closureOf(b, big)
		for _, shape := range []struct {
			name  string
			top   string
			paths int
		}{{fmt.Sprintf("%d small paths", len(small)), small[0], len(small)}, {fmt.Sprintf("%d-path closure of real files", len(bigPaths)), big, len(bigPaths)}} {
			push := func(flags string) lbRun {
				c := m.NewCache(b, "")
				args := append([]string{"push", "--quiet", "--to", lbS3URL(c, p), "--compression", "xz", "--secret-key-file", secret}, strings.Fields(flags)...)
				r := lbExec(b, p, bin, writerEnv(c), append(args, shape.top)...)
				if got := lbNarInfos(b, c); got != shape.paths {
					b.Fatalf("%s %s: %d narinfos, want %d\n%s", shape.name, flags, got, shape.paths, r.out)
				}
				return r
			}
			push(formatVariants[0].flags) // warm-up: page cache, the DB
			var runs []lbRun
			for _, v := range formatVariants {
				runs = append(runs, push(v.flags))
			}
			base := runs[0]
			fmt.Printf("\n%s, xz, one-shot push into local MinIO: each optional file's cost\n", shape.name)
			fmt.Printf("%-18s %8s %8s %9s %8s %8s %9s\n", "", "wall s", "CPU s", "requests", "wall ×", "CPU ×", "requests ×")
			for k, v := range formatVariants {
				r := runs[k]
				fmt.Printf("%-18s %8.2f %8.2f %9d %8.2f %8.2f %9.3f\n", v.name, r.m.wall.Seconds(), r.m.cpu.Seconds(), r.counts[testenv.KindTotal],
					r.m.wall.Seconds()/base.m.wall.Seconds(), r.m.cpu.Seconds()/base.m.cpu.Seconds(),
					float64(r.counts[testenv.KindTotal])/float64(base.counts[testenv.KindTotal]))
			}
		}
	}
}

package main

// Request-count and lifecycle benchmarks: every S3 request goes through a
// counting proxy (testenv.StartProxy) in front of MinIO.
//
//	go test -run '^$' -bench 'Requests5000|GCVerify20k' -benchtime 1x ./cmd/nixpushd/
//
// NIXPUSHD_BENCH_OLD_BIN=/path/to/an/older/nixpushd makes
// BenchmarkRequests5000 push the same closure with that binary too, into
// its own fresh bucket, and print both side by side.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// lbWideExpr is a system-like closure of small paths, all made at
// evaluation time with builtins.toFile (no builds): `leaves` leaves, `mids`
// mids each referring to its own share of the leaves plus the first
// `shared` leaves (the glibc-like paths everything uses), and a top
// referring to every mid. Output: [ top ] ++ mids ++ leaves.
const lbWideExpr = `{ seed, leaves, mids, shared }:
let
  per = leaves / mids;
  leaf = builtins.genList (i: builtins.toFile "lb-leaf-${toString i}" "leaf ${toString i}, seed ${seed}\n") leaves;
  common = builtins.genList (i: builtins.elemAt leaf i) shared;
  mid = builtins.genList (j: builtins.toFile "lb-mid-${toString j}" (
    "mid ${toString j}, seed ${seed}\n"
    + toString (builtins.genList (i: builtins.elemAt leaf (j * per + i)) per) + "\n"
    + toString common + "\n")) mids;
  top = builtins.toFile "lb-top" ("top, seed ${seed}\n" + toString mid + "\n");
in [ top ] ++ mid ++ leaf
`

// lbEval evaluates expr (a function of seed and the extra --arg/--argstr)
// with a seed unique to this run and returns the list of store paths it
// yields; builtins.toFile adds them to the store as it goes.
func lbEval(b testing.TB, expr string, extra ...string) []string {
	b.Helper()
	return lbEvalSeed(b, fmt.Sprintf("lb-%d", time.Now().UnixNano()), expr, extra...)
}

// lbEvalSeed is lbEval with a fixed seed: the paths made by an earlier
// run are still in the store (until a Nix gc), and evaluating again only
// lists them, in seconds rather than minutes for 100,000 paths.
func lbEvalSeed(b testing.TB, seed, expr string, extra ...string) []string {
	b.Helper()
	file := filepath.Join(b.TempDir(), "default.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		b.Fatal(err)
	}
	args := append([]string{"--read-write-mode", "--eval", "--strict", "--json", file, "--argstr", "seed", seed}, extra...)
	var paths []string
	if err := json.Unmarshal(testenv.Nix(b, "nix-instantiate", args...), &paths); err != nil {
		b.Fatalf("nix-instantiate output: %v", err)
	}
	return paths
}

// lbS3URL is the cache's s3:// URL with the proxy as endpoint.
func lbS3URL(c *testenv.Cache, p *testenv.Proxy) string {
	return fmt.Sprintf("s3://%s?endpoint=%s&region=%s&scheme=http", c.Bucket, p.Endpoint(), testenv.Region)
}

// lbRun is one process of a binary, measured, with the requests it sent
// through p.
type lbRun struct {
	m      measured
	counts map[string]int64
	out    string
}

func lbExec(b testing.TB, p *testenv.Proxy, binary string, env []string, args ...string) lbRun {
	b.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	p.Reset()
	m, out := measureOut(b, cmd)
	return lbRun{m: m, counts: p.Counts(), out: string(out)}
}

// lbPrintKinds prints the request counts of several runs side by side:
// methods, kinds and the kind:class breakdown, then statuses.
func lbPrintKinds(names []string, runs []lbRun) {
	keys := map[string]bool{}
	for _, r := range runs {
		for k := range r.counts {
			keys[k] = true
		}
	}
	order := func(k string) int {
		switch {
		case k == testenv.KindTotal:
			return 0
		case k == strings.ToUpper(k) && !strings.Contains(k, ":"):
			return 1 // methods
		case strings.HasPrefix(k, "status:"):
			return 4
		case k == testenv.KindInjected:
			return 5
		case strings.Contains(k, ":"):
			return 3
		}
		return 2
	}
	sorted := slices.SortedFunc(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	}, func(a, b string) int {
		if oa, ob := order(a), order(b); oa != ob {
			return oa - ob
		}
		return strings.Compare(a, b)
	})
	fmt.Printf("%-28s", "requests")
	for _, n := range names {
		fmt.Printf(" %14s", n)
	}
	fmt.Println()
	for _, k := range sorted {
		label := k
		if order(k) == 3 {
			label = "  " + k
		}
		fmt.Printf("%-28s", label)
		for _, r := range runs {
			fmt.Printf(" %14d", r.counts[k])
		}
		fmt.Println()
	}
	// A run that was not a process of its own (the daemon) has no times.
	measuredRow := func(label string, v func(measured) string) {
		fmt.Printf("%-28s", label)
		for _, r := range runs {
			if r.m.wall == 0 {
				fmt.Printf(" %14s", "-")
			} else {
				fmt.Printf(" %14s", v(r.m))
			}
		}
		fmt.Println()
	}
	measuredRow("wall s", func(m measured) string { return fmt.Sprintf("%.2f", m.wall.Seconds()) })
	measuredRow("CPU s", func(m measured) string { return fmt.Sprintf("%.2f", m.cpu.Seconds()) })
	measuredRow("peak RSS MiB", func(m measured) string { return fmt.Sprintf("%.0f", m.rssMiB) })
}

// lbNarInfos counts the narinfos in the bucket.
func lbNarInfos(b testing.TB, c *testenv.Cache) int {
	n := 0
	for k := range c.Objects(b) {
		if strings.HasSuffix(k, ".narinfo") {
			n++
		}
	}
	return n
}

// BenchmarkRequests5000 pushes a fresh 5,051-path closure of small paths
// (5,000 leaves, 50 mids, a top) with --compression zstd and a signing key
// into a fresh bucket through the counting proxy, then pushes it again
// (all cached); then a daemon pushes a fresh DAG of the same shape as it
// appears in the store. It reports the requests of each by kind.
func BenchmarkRequests5000(b *testing.B) {
	m := requireBench(b)
	const leaves, mids, shared = 5000, 50, 10
	began := time.Now()
	paths := lbEval(b, lbWideExpr, "--arg", "leaves", strconv.Itoa(leaves), "--arg", "mids", strconv.Itoa(mids), "--arg", "shared", strconv.Itoa(shared))
	if len(paths) != 1+mids+leaves {
		b.Fatalf("the closure has %d paths, want %d", len(paths), 1+mids+leaves)
	}
	top := paths[0]
	edges := mids + leaves + mids*shared
	fmt.Printf("\nclosure: %d paths (%d leaves, %d mids, top), %d references, made in %.1f s\n", len(paths), leaves, mids, edges, time.Since(began).Seconds())
	secret, _ := testenv.GenerateKey(b, b.TempDir(), "lb-bench-1")
	p := testenv.StartProxy(b, m.Endpoint)

	type binary struct{ name, path string }
	bins := []binary{{"new", bin}}
	if old := os.Getenv("NIXPUSHD_BENCH_OLD_BIN"); old != "" {
		bins = append([]binary{{"old", old}}, bins...)
	}
	for i := 0; i < b.N; i++ {
		var names []string
		var runs []lbRun
		byName := map[string]lbRun{}
		for _, bn := range bins {
			c := m.NewCache(b, "")
			args := []string{"push", "--quiet", "--to", lbS3URL(c, p), "--compression", "zstd", "--secret-key-file", secret, top}
			push := lbExec(b, p, bn.path, writerEnv(c), args...)
			if got := lbNarInfos(b, c); got != len(paths) {
				b.Fatalf("%s: %d narinfos in the bucket after the push, want %d\n%s", bn.name, got, len(paths), push.out)
			}
			again := lbExec(b, p, bn.path, writerEnv(c), args...)
			names = append(names, bn.name+" push", bn.name+" re-push")
			runs = append(runs, push, again)
			byName[bn.name+" push"], byName[bn.name+" re-push"] = push, again
		}
		// The daemon, as the paths of a fresh DAG of the same shape
		// arrive through its store watcher: each batch asks which of its
		// paths the cache lacks and checks their references before
		// publishing, against a bucket that grows meanwhile.
		dc := m.NewCache(b, "")
		d := startDaemonProc(b, writerEnv(dc), "", "--to", lbS3URL(dc, p), "--secret-key-file", secret, "--watch-store", "--reconcile-interval", "1h")
		time.Sleep(time.Second)
		p.Reset()
		fresh := lbEval(b, lbWideExpr, "--arg", "leaves", strconv.Itoa(leaves), "--arg", "mids", strconv.Itoa(mids), "--arg", "shared", strconv.Itoa(shared))
		waitFor(b, 10*time.Minute, "the daemon to push the fresh DAG", func() bool {
			return dc.Has(b, narinfoKey(b, fresh[0])) && lbNarInfos(b, dc) >= len(fresh)
		})
		daemon := lbRun{counts: p.Counts()}
		d.stop()
		names = append(names, "daemon")
		runs = append(runs, daemon)
		byName["daemon"] = daemon

		fmt.Printf("requests through the proxy (push --compression zstd, signed, %d paths, fresh bucket; re-push: all cached; daemon: xz, a fresh DAG through the watcher):\n", len(paths))
		lbPrintKinds(names, runs)
		for _, name := range names {
			r := byName[name]
			fmt.Printf("%-14s %6d requests = %.2f per path; narinfo HEADs beyond one per path: %d (the closure has %d references)\n",
				name, r.counts[testenv.KindTotal], float64(r.counts[testenv.KindTotal])/float64(len(paths)),
				r.counts[testenv.KindHeadObject+":narinfo"]-int64(len(paths)), edges)
		}
		b.ReportMetric(float64(daemon.counts[testenv.KindTotal])/float64(len(fresh)), "daemon-requests/path")

		push, again := byName["new push"], byName["new re-push"]
		b.ReportMetric(float64(push.counts[testenv.KindHeadObject]), "heads/op")
		b.ReportMetric(float64(push.counts["PUT"]), "puts/op")
		b.ReportMetric(float64(push.counts[testenv.KindGetObject]), "gets/op")
		b.ReportMetric(float64(push.counts[testenv.KindList]), "lists/op")
		b.ReportMetric(float64(push.counts[testenv.KindTotal]), "total-requests/op")
		b.ReportMetric(float64(push.counts[testenv.KindTotal])/float64(len(paths)), "requests/path")
		b.ReportMetric(push.m.wall.Seconds(), "push-s")
		b.ReportMetric(float64(again.counts[testenv.KindHeadObject]), "repush-heads/op")
		b.ReportMetric(float64(again.counts[testenv.KindTotal]), "repush-requests/op")
		b.ReportMetric(float64(again.counts[testenv.KindTotal])/float64(len(paths)), "repush-requests/path")
		b.ReportMetric(again.m.wall.Seconds(), "repush-s")
		if old, ok := byName["old push"]; ok {
			b.ReportMetric(float64(old.counts[testenv.KindTotal]), "old-total-requests/op")
			b.ReportMetric(float64(byName["old re-push"].counts[testenv.KindTotal]), "old-repush-requests/op")
			b.ReportMetric(old.m.wall.Seconds(), "old-push-s")
		}
	}
}

// lbSynthPath is one synthetic cache entry.
type lbSynthPath struct {
	path string // /nix/store/<hash>-<name>
	hash string
	refs []int
}

// lbSynthDAG makes n synthetic store paths in closures of size paths
// (think: system generations). Within a closure, a path refers to up to
// five of the window paths before it; paths of closures from recentFrom
// on also refer to two paths of closure 0 (a shared base), so gc keeps
// part of it with them.
func lbSynthDAG(n, size, window, recentFrom int, rng *mrand.Rand) []lbSynthPath {
	ps := make([]lbSynthPath, n)
	for i := range ps {
		h := make([]byte, 20)
		rand.Read(h)
		ps[i].hash = nar.NixBase32.EncodeToString(h)
		ps[i].path = fmt.Sprintf("%s/%s-lb-synth-%d", nar.StoreDir, ps[i].hash, i)
		start := i / size * size
		lo := max(start, i-window)
		if i > lo {
			for range rng.IntN(6) {
				ps[i].refs = append(ps[i].refs, lo+rng.IntN(i-lo))
			}
		}
		if i/size >= recentFrom {
			ps[i].refs = append(ps[i].refs, rng.IntN(size), rng.IntN(size))
		}
		slices.Sort(ps[i].refs)
		ps[i].refs = slices.Compact(ps[i].refs)
	}
	return ps
}

// lbFill writes the narinfos (signed) and tiny NARs (compression none,
// real NAR serialisations of a one-line file) of ps[from:to] with the root
// client, in parallel; and, if lsEvery > 0, a NAR listing (<hash>.ls, as
// nix copy writes with write-nar-listing=true) for every lsEvery-th path.
func lbFill(b testing.TB, cl *minio.Client, bucket string, ps []lbSynthPath, from, to int, key *nar.SecretKey, lsEvery int) {
	b.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(48)
	for i := from; i < to; i++ {
		g.Go(func() error {
			var nb bytes.Buffer
			w := nar.NewWriter(&nb)
			content := fmt.Sprintf("synthetic path %d of the gc/verify benchmark\n", i)
			if err := w.WriteHeader(&nar.Header{Type: nar.TypeRegular, Size: int64(len(content))}); err != nil {
				return err
			}
			w.Write([]byte(content))
			if err := w.Close(); err != nil {
				return err
			}
			sum := sha256.Sum256(nb.Bytes())
			h := nar.NewSHA256(sum[:])
			ni := &nar.NarInfo{
				StorePath: ps[i].path, URL: "nar/" + nar.NixBase32.EncodeToString(sum[:]) + ".nar", Compression: "none",
				FileHash: h, FileSize: int64(nb.Len()), NarHash: h, NarSize: int64(nb.Len()),
			}
			for _, r := range ps[i].refs {
				ni.References = append(ni.References, strings.TrimPrefix(ps[r].path, nar.StoreDir+"/"))
			}
			slices.Sort(ni.References)
			ni.Sign(key)
			text, err := ni.MarshalText()
			if err != nil {
				return err
			}
			if _, err := cl.PutObject(ctx, bucket, ni.URL, bytes.NewReader(nb.Bytes()), int64(nb.Len()), minio.PutObjectOptions{ContentType: cache.TypeNAR}); err != nil {
				return err
			}
			if lsEvery > 0 && i%lsEvery == 0 {
				ls := fmt.Appendf(nil, `{"version":1,"root":{"type":"regular","size":%d,"narOffset":96}}`, len(content))
				if _, err := cl.PutObject(ctx, bucket, ps[i].hash+".ls", bytes.NewReader(ls), int64(len(ls)), minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
					return err
				}
			}
			_, err = cl.PutObject(ctx, bucket, ps[i].hash+".narinfo", bytes.NewReader(text), int64(len(text)), minio.PutObjectOptions{ContentType: cache.TypeNarInfo})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("filling the bucket: %v", err)
	}
}

// lbSelfRequests is the "(N requests)" gc and verify print.
var lbSelfRequests = regexp.MustCompile(`\((\d+) requests?`)

func lbSelfCount(out string) int64 {
	m := lbSelfRequests.FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// lbLastLine is the last non-empty line of out (the summary).
func lbLastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// BenchmarkGCVerify20k fills a fresh bucket with 20,000 synthetic signed
// narinfos and their NARs (40 closures of 500 paths; the first 20 written
// well before the last 20), then runs, each as its own process through
// the counting proxy with delete-capable credentials: verify, gc
// --dry-run, and gc with --keep between the two halves' ages (about half
// goes), and a verify of what is left (it must find no problem). One more
// verify, straight to MinIO, shows what the proxy costs in wall time.
//
// NIXPUSHD_BENCH_LS_EVERY=N also writes a NAR listing (<hash>.ls) for
// every Nth path, as caches filled by nix copy with write-nar-listing have.
func BenchmarkGCVerify20k(b *testing.B) {
	m := requireBench(b)
	const n, size, window = 20000, 500, 100
	// Between the old and the recent half: the margin gc's age judgement
	// gets on each side is gap/2, and gc --dry-run judges ages by the
	// local clock after listing, gc by its lock's Last-Modified before.
	const gap = 10 * time.Second
	lsEvery, _ := strconv.Atoi(os.Getenv("NIXPUSHD_BENCH_LS_EVERY"))
	secret, public := testenv.GenerateKey(b, b.TempDir(), "lb-gc-1")
	key, err := nar.LoadSecretKeyFile(secret)
	if err != nil {
		b.Fatal(err)
	}
	root := m.RootClient(b)
	rootEnv := []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword}
	p := testenv.StartProxy(b, m.Endpoint)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < b.N; i++ {
		ps := lbSynthDAG(n, size, window, n/size/2, rng)
		c := m.NewCache(b, "")
		began := time.Now()
		info := []byte(cache.CacheInfo)
		if _, err := root.PutObject(context.Background(), c.Bucket, "nix-cache-info", bytes.NewReader(info), int64(len(info)), minio.PutObjectOptions{}); err != nil {
			b.Fatal(err)
		}
		lbFill(b, root, c.Bucket, ps, 0, n/2, key, lsEvery)
		oldDone := time.Now()
		time.Sleep(gap)
		lbFill(b, root, c.Bucket, ps, n/2, n, key, lsEvery)
		fmt.Printf("\nfilled %d narinfos + %d NARs in %.1f s", n, n, time.Since(began).Seconds())
		if lsEvery > 0 {
			fmt.Printf(" (and a .ls listing for every %dth path)", lsEvery)
		}
		fmt.Println()

		url := lbS3URL(c, p)
		// Old half older than keep, recent half younger, with gap/2 of
		// margin on each side when the process starts.
		keepArg := func() string { return (time.Since(oldDone) - gap/2).Round(time.Millisecond).String() }
		direct := strings.Replace(url, p.Endpoint(), m.Endpoint, 1)
		verifyDirect := lbExec(b, p, bin, rootEnv, "verify", "--to", direct, "--trusted-public-keys", public)
		verify := lbExec(b, p, bin, rootEnv, "verify", "--to", url, "--trusted-public-keys", public)
		k := keepArg()
		dry := lbExec(b, p, bin, rootEnv, "gc", "--dry-run", "--to", url, "--keep", k, "--grace", k)
		k = keepArg()
		gc := lbExec(b, p, bin, rootEnv, "gc", "--to", url, "--keep", k, "--grace", k)
		after := lbExec(b, p, bin, rootEnv, "verify", "--to", url, "--trusted-public-keys", public)
		left := lbNarInfos(b, c)

		fmt.Printf("verify:      %s\n", lbLastLine(verify.out))
		fmt.Printf("gc --dry-run: %s\n", lbLastLine(dry.out))
		fmt.Printf("gc:          %s\n", lbLastLine(gc.out))
		fmt.Printf("verify after: %s\n", lbLastLine(after.out))
		fmt.Printf("verify straight to MinIO (no proxy): %.2f s wall, %.2f s CPU, %.0f MiB\n", verifyDirect.m.wall.Seconds(), verifyDirect.m.cpu.Seconds(), verifyDirect.m.rssMiB)
		names := []string{"verify", "gc --dry-run", "gc", "verify after"}
		runs := []lbRun{verify, dry, gc, after}
		lbPrintKinds(names, runs)
		fmt.Printf("%-28s", "self-reported requests")
		for _, r := range runs {
			fmt.Printf(" %14d", lbSelfCount(r.out))
		}
		fmt.Printf("\nnarinfos left after gc: %d of %d\n", left, n)
		if left < n/3 || left > n*2/3 {
			b.Errorf("gc left %d of %d narinfos, want about half", left, n)
		}
		if !strings.Contains(after.out, "no problems") {
			b.Errorf("verify after gc found problems:\n%s", after.out)
		}

		for _, x := range []struct {
			name string
			r    lbRun
		}{{"verify", verify}, {"dryrun", dry}, {"gc", gc}} {
			b.ReportMetric(x.r.m.wall.Seconds(), x.name+"-s")
			b.ReportMetric(float64(x.r.counts[testenv.KindTotal]), x.name+"-requests")
			b.ReportMetric(x.r.m.rssMiB, x.name+"-RSS-MiB")
		}
		b.ReportMetric(float64(n-left), "deleted-narinfos")
	}
}

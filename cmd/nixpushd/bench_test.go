package main

// End-to-end benchmarks against real Nix and MinIO (`make bench`). They
// report ratios measured side by side in one run, never assert times.
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./cmd/nixpushd/

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// measured is one process's cost.
type measured struct {
	wall, cpu time.Duration
	rssMiB    float64
}

func (m measured) add(o measured) measured {
	return measured{m.wall + o.wall, m.cpu + o.cpu, max(m.rssMiB, o.rssMiB)}
}

// measure runs cmd and reads its rusage: CPU of it and its children, peak RSS.
func measure(b testing.TB, cmd *exec.Cmd) measured {
	b.Helper()
	m, _ := measureOut(b, cmd)
	return m
}

// measureOut is measure, also returning the process's output.
func measureOut(b testing.TB, cmd *exec.Cmd) (measured, []byte) {
	b.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return measured{wall, cpu, float64(ru.Maxrss) / 1024}, out
}

func pushCmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, append([]string{"push", "--quiet"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	return cmd
}

func bucketBytes(b testing.TB, c *testenv.Cache) int64 {
	var n int64
	for _, size := range c.Objects(b) {
		n += size
	}
	return n
}

// corpusExpr assembles a system-like closure from real files on this
// machine: Go binaries, shared libraries, source text, docs. The seed is
// fixed, so it is built once and reused by later runs.
const corpusExpr = `
let
  mk = name: script: derivation {
    inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    args = ["-c" script]; PATH = "/usr/bin:/bin"; seed = "nixpushd-bench-v1";
  };
  tools = mk "bench-go-tools" "mkdir -p $out/bin $out/tool; cp -a /usr/local/go/bin/. $out/bin; cp -a /usr/local/go/pkg/tool/. $out/tool";
  cmdsrc = mk "bench-go-cmd-src" "mkdir $out; cp -a /usr/local/go/src/cmd/. $out";
  libsrc = mk "bench-go-lib-src" "mkdir $out; cp -a /usr/local/go/src/runtime /usr/local/go/src/net /usr/local/go/src/crypto $out";
  libs = mk "bench-libs" "mkdir $out; cp -a /usr/lib/x86_64-linux-gnu/lib[a-f]* $out";
  docs = mk "bench-docs" "mkdir $out; cp -a /usr/share/doc/[a-l]* $out";
in mk "bench-system" "mkdir $out; echo ${tools} ${cmdsrc} ${libsrc} ${libs} ${docs} > $out/closure"
`

func requireBench(b *testing.B) *testenv.MinIO {
	testenv.RequireNix(b)
	return requireMinIO(b)
}

func closureOf(b testing.TB, top string) (paths []string, narBytes int64) {
	paths = strings.Fields(string(testenv.Nix(b, "nix-store", "-qR", top)))
	for _, p := range paths {
		n, err := strconv.ParseInt(strings.TrimSpace(string(testenv.Nix(b, "nix-store", "-q", "--size", p))), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		narBytes += n
	}
	return paths, narBytes
}

// BenchmarkVsSeeds pushes a >200 MB closure of real files with nixpushd
// (xz, zstd) and with the seed guides' workflow (nix copy to a signed xz
// file:// cache, then mc mirror into a bucket), each into a fresh bucket.
func BenchmarkVsSeeds(b *testing.B) {
	m := requireBench(b)
	top := testenv.BuildExpr(b, corpusExpr)[0]
	paths, narBytes := closureOf(b, top)
	secret, public := testenv.GenerateKey(b, b.TempDir(), "bench-1")
	for i := 0; i < b.N; i++ {
		results := map[string]measured{}
		stored := map[string]int64{}
		for _, comp := range []string{"xz", "zstd"} {
			c := m.NewCache(b, "")
			results["nixpushd "+comp] = measure(b, pushCmd(writerEnv(c), "--to", c.S3URL, "--secret-key-file", secret, "--compression", comp, top))
			stored["nixpushd "+comp] = bucketBytes(b, c)
			if out, err := testenv.CopyFrom(b, c.HTTPURL, []string{public}, top); err != nil {
				b.Fatalf("nix rejects the %s cache: %v\n%s", comp, err, out)
			}
		}
		// The seeds' workflow.
		c := m.NewCache(b, "")
		dir := b.TempDir()
		copyCmd := exec.Command("nix", "copy", "--to", "file://"+dir+"?compression=xz&secret-key="+secret, top)
		copyCmd.Env = append(os.Environ(), testenv.NixEnv()...)
		nixCopy := measure(b, copyCmd)
		mirror := m.MCCommand(context.Background(), "mirror", "--quiet", dir, testenv.MCAlias+"/"+c.Bucket)
		mcMirror := measure(b, mirror)
		results["seeds: nix copy + mc mirror"] = nixCopy.add(mcMirror)
		results["  of which nix copy (file://, xz)"] = nixCopy
		results["  of which mc mirror"] = mcMirror
		stored["seeds: nix copy + mc mirror"] = bucketBytes(b, c)

		base := results["seeds: nix copy + mc mirror"]
		fmt.Printf("\nclosure: %d paths, %.1f MB of NAR (real files: Go binaries, libraries, source, docs)\n", len(paths), float64(narBytes)/1e6)
		stored["  of which nix copy (file://, xz)"] = stored["seeds: nix copy + mc mirror"]
		stored["  of which mc mirror"] = stored["seeds: nix copy + mc mirror"]
		fmt.Printf("%-34s %9s %9s %9s %11s %14s\n", "", "wall s", "CPU s", "RSS MiB", "stored MB", "speed vs seeds")
		for _, name := range []string{"seeds: nix copy + mc mirror", "  of which nix copy (file://, xz)", "  of which mc mirror", "nixpushd xz", "nixpushd zstd"} {
			r := results[name]
			fmt.Printf("%-34s %9.1f %9.1f %9.0f %11.1f %13.1fx   %5.1f MB/s of NAR\n", name, r.wall.Seconds(), r.cpu.Seconds(), r.rssMiB,
				float64(stored[name])/1e6, base.wall.Seconds()/r.wall.Seconds(), float64(narBytes)/1e6/r.wall.Seconds())
		}
		xz, zstd := results["nixpushd xz"], results["nixpushd zstd"]
		fmt.Printf("ratios nixpushd/seeds: xz wall %.2f, CPU %.2f, stored %.2f; zstd wall %.3f, CPU %.3f, stored %.2f\n",
			xz.wall.Seconds()/base.wall.Seconds(), xz.cpu.Seconds()/base.cpu.Seconds(), float64(stored["nixpushd xz"])/float64(stored["seeds: nix copy + mc mirror"]),
			zstd.wall.Seconds()/base.wall.Seconds(), zstd.cpu.Seconds()/base.cpu.Seconds(), float64(stored["nixpushd zstd"])/float64(stored["seeds: nix copy + mc mirror"]))
		b.ReportMetric(base.wall.Seconds()/xz.wall.Seconds(), "xz-speedup")
		b.ReportMetric(base.wall.Seconds()/zstd.wall.Seconds(), "zstd-speedup")
		b.ReportMetric(float64(stored["nixpushd xz"])/float64(stored["seeds: nix copy + mc mirror"]), "xz-size-ratio")
	}
}

// BenchmarkNAR1GiB pushes one NAR of 1 GiB with default settings and
// reports the peak RSS: memory must stay flat in NAR size.
func BenchmarkNAR1GiB(b *testing.B) {
	m := requireBench(b)
	// Real bytes (libraries, binaries, source) repeated to 1 GiB.
	top := testenv.BuildExpr(b, `derivation {
	  name = "bench-1gib"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/usr/bin:/bin";
	  seed = "nixpushd-bench-v1";
	  args = ["-c" "while cat /usr/lib/x86_64-linux-gnu/lib[a-f]*.so* /usr/local/go/pkg/tool/linux_amd64/* /usr/local/go/src/runtime/*.go; do :; done 2>/dev/null | head -c 1073741824 > $out"];
	}`)[0]
	for i := 0; i < b.N; i++ {
		c := m.NewCache(b, "")
		r := measure(b, pushCmd(writerEnv(c), "--to", c.S3URL, top))
		fmt.Printf("\n1 GiB NAR, default settings (xz, --jobs %d): %.1f s wall, %.1f s CPU, peak RSS %.0f MiB, stored %.1f MB\n",
			defaultJobs(), r.wall.Seconds(), r.cpu.Seconds(), r.rssMiB, float64(bucketBytes(b, c))/1e6)
		b.ReportMetric(r.rssMiB, "peak-RSS-MiB")
	}
}

func defaultJobs() int { return runtime.NumCPU() }

// BenchmarkNoopRepush1000 re-pushes a closure of 1,000 paths that are all
// cached already: the cost is one existence check per path.
func BenchmarkNoopRepush1000(b *testing.B) {
	m := requireBench(b)
	cl := testenv.BuildClosure(b, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 997, Seed: "nixpushd-bench-noop-v1"})
	c := m.NewCache(b, "")
	measure(b, pushCmd(writerEnv(c), "--to", c.S3URL, cl.Top))
	for i := 0; i < b.N; i++ {
		r := measure(b, pushCmd(writerEnv(c), "--to", c.S3URL, cl.Top))
		fmt.Printf("\nno-op re-push of %d cached paths: %.2f s wall, %.2f s CPU\n", len(cl.All), r.wall.Seconds(), r.cpu.Seconds())
		b.ReportMetric(r.wall.Seconds(), "noop-s")
	}
}

// BenchmarkHookLatency measures, for 50 small builds with an idle daemon,
// the time from the post-build-hook starting to the narinfo being visible
// over HTTP.
func BenchmarkHookLatency(b *testing.B) {
	m := requireBench(b)
	c := m.NewCache(b, "")
	d := startDaemonProc(b, writerEnv(c), "", "--to", c.S3URL, "--watch-store=false", "--log-level", "info")
	dir := b.TempDir()
	stamp := filepath.Join(dir, "hook-start")
	hook := filepath.Join(dir, "hook.sh")
	// The hook records when Nix started it, then becomes nixpushd-hook.
	alias := filepath.Join(dir, "nixpushd-hook")
	if err := os.Symlink(bin, alias); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(hook, []byte(fmt.Sprintf("#!/bin/sh\ndate +%%s%%N > %s\nNIXPUSHD_SOCKET=%s exec %s\n", stamp, d.socket, alias)), 0o755)
	for i := 0; i < b.N; i++ {
		var lat []time.Duration
		for j := range 50 {
			expr := fmt.Sprintf(`derivation { name = "bench-latency-%d"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo %d-%d > $out"]; }`, j, time.Now().UnixNano(), j)
			file := filepath.Join(dir, "e.nix")
			os.WriteFile(file, []byte(expr), 0o644)
			drv := strings.TrimSpace(string(testenv.Nix(b, "nix-instantiate", file)))
			out := strings.TrimSpace(string(testenv.Nix(b, "nix-store", "-q", "--outputs", drv)))
			url := c.HTTPURL + "/" + narinfoKey(b, out)
			seen := make(chan time.Time, 1)
			stop := make(chan struct{})
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if resp, err := http.Get(url); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							seen <- time.Now()
							return
						}
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
			testenv.Nix(b, "nix-store", "--option", "post-build-hook", hook, "-r", drv)
			var t1 time.Time
			select {
			case t1 = <-seen:
			case <-time.After(30 * time.Second):
				close(stop)
				b.Fatalf("narinfo of %s not visible after 30 s", out)
			}
			close(stop)
			raw, _ := os.ReadFile(stamp)
			ns, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
			if err != nil {
				b.Fatalf("hook stamp: %v", err)
			}
			lat = append(lat, t1.Sub(time.Unix(0, ns)))
		}
		slices.Sort(lat)
		p50, p95 := lat[len(lat)/2], lat[len(lat)*95/100]
		fmt.Printf("\npost-build-hook to narinfo visible, %d builds: p50 %v, p95 %v, max %v\n", len(lat), p50.Round(time.Millisecond), p95.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		b.ReportMetric(p50.Seconds(), "p50-s")
		b.ReportMetric(p95.Seconds(), "p95-s")
	}
	d.stop()
}

// BenchmarkIdleCPU reports the CPU an idle daemon (watcher on) uses.
func BenchmarkIdleCPU(b *testing.B) {
	testenv.RequireNix(b)
	d := startDaemonProc(b, nil, "", "--to", "file://"+b.TempDir(), "--log-level", "info")
	time.Sleep(2 * time.Second) // past start-up
	for i := 0; i < b.N; i++ {
		before := procCPU(b, d.cmd.Process.Pid)
		time.Sleep(10 * time.Second)
		used := procCPU(b, d.cmd.Process.Pid) - before
		fmt.Printf("\nidle daemon: %v CPU in 10 s\n", used)
		b.ReportMetric(used.Seconds(), "cpu-s/10s")
	}
	d.stop()
}

// procCPU reads utime+stime of pid from /proc (clock ticks of 10 ms).
func procCPU(b testing.TB, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" that ends the command name.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

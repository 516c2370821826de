package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// BenchmarkSmallPaths5000 is the table of the scale issue, side by side in
// one run on 5,051 small paths (a wide DAG made with builtins.toFile):
// the seeds' workflow (nix copy to file:// with xz, then mc mirror), mc
// mirror alone (the server's floor for that many objects), a one-shot
// `nixpushd push` (xz, as the seeds), and a running daemon that sees a
// fresh DAG of the same shape arrive through its store watcher.
func BenchmarkSmallPaths5000(b *testing.B) {
	m := requireBench(b)
	const leaves, mids, shared = 5000, 50, 10
	dag := func() []string {
		return lbEval(b, lbWideExpr, "--arg", "leaves", strconv.Itoa(leaves), "--arg", "mids", strconv.Itoa(mids), "--arg", "shared", strconv.Itoa(shared))
	}
	secret, public := testenv.GenerateKey(b, b.TempDir(), "scale-1")
	for i := 0; i < b.N; i++ {
		paths := dag()
		top := paths[0]
		n := len(paths)

		// The seeds.
		seeds := m.NewCache(b, "")
		dir := b.TempDir()
		copyCmd := exec.Command("nix", "copy", "--to", "file://"+dir+"?compression=xz&secret-key="+secret, top)
		copyCmd.Env = append(os.Environ(), testenv.NixEnv()...)
		nixCopy := measure(b, copyCmd)
		mirror := measure(b, m.MCCommand(context.Background(), "mirror", "--quiet", dir, testenv.MCAlias+"/"+seeds.Bucket))

		// One-shot push.
		c := m.NewCache(b, "")
		push := measure(b, pushCmd(writerEnv(c), "--to", c.S3URL, "--secret-key-file", secret, top))
		if got := lbNarInfos(b, c); got != n {
			b.Fatalf("push: %d narinfos, want %d", got, n)
		}
		if out, err := testenv.CopyFrom(b, c.HTTPURL, []string{public}, top); err != nil {
			b.Fatalf("nix rejects the pushed cache: %v\n%s", err, out)
		}

		// The daemon, watching while a fresh DAG is registered.
		dc := m.NewCache(b, "")
		d := startDaemonProc(b, writerEnv(dc), "", append(s3Args(dc, secret), "--watch-store", "--reconcile-interval", "1h", "--log-level", "info")...) // info: what a user runs
		time.Sleep(time.Second)
		cpu0 := procCPU(b, d.cmd.Process.Pid)
		start := time.Now()
		fresh := dag()
		made := time.Since(start)
		waitFor(b, 10*time.Minute, "the daemon to push the fresh DAG", func() bool {
			return dc.Has(b, narinfoKey(b, fresh[0])) && lbNarInfos(b, dc) >= len(fresh)
		})
		daemonWall := time.Since(start)
		daemonCPU := procCPU(b, d.cmd.Process.Pid) - cpu0
		d.stop()

		seedsTotal := nixCopy.add(mirror)
		fmt.Printf("\n%d small paths (%d leaves, %d mids, top), xz, into local MinIO\n", n, leaves, mids)
		fmt.Printf("%-42s %8s %8s %8s %12s\n", "", "wall s", "CPU s", "RSS MiB", "vs seeds")
		row := func(name string, r measured) {
			fmt.Printf("%-42s %8.1f %8.1f %8.0f %11.2fx\n", name, r.wall.Seconds(), r.cpu.Seconds(), r.rssMiB, seedsTotal.wall.Seconds()/r.wall.Seconds())
		}
		row("seeds: nix copy (file://, xz) + mc mirror", seedsTotal)
		row("  nix copy", nixCopy)
		row("  mc mirror (the server's floor)", mirror)
		row("nixpushd push (one-shot)", push)
		row("nixpushd daemon (store watcher)", measured{wall: daemonWall, cpu: daemonCPU})
		daemonPerPath := daemonCPU.Seconds() * 1000 / float64(len(fresh))
		pushPerPath := push.cpu.Seconds() * 1000 / float64(n)
		// CPU per path moves with the machine's load as much as wall
		// time does; the daemon's against the one-shot push's, measured
		// minutes apart, is the steadier figure of its own overhead.
		fmt.Printf("the daemon's DAG was registered within %.1f s of its start\n", made.Seconds())
		fmt.Printf("daemon/one-shot wall %.2f; daemon CPU %.2f ms per path; push CPU %.2f ms per path; daemon/push CPU %.2f\n",
			daemonWall.Seconds()/push.wall.Seconds(), daemonPerPath, pushPerPath, daemonPerPath/pushPerPath)
		b.ReportMetric(seedsTotal.wall.Seconds()/push.wall.Seconds(), "push-speedup-vs-seeds")
		b.ReportMetric(daemonWall.Seconds()/push.wall.Seconds(), "daemon/push")
		b.ReportMetric(daemonPerPath, "daemon-cpu-ms/path")
		b.ReportMetric(daemonPerPath/pushPerPath, "daemon/push-cpu")
		b.ReportMetric(push.wall.Seconds()/mirror.wall.Seconds(), "push/mc-mirror")
	}
}

// BenchmarkClosure100k pushes a 100,000-path closure (same DAG shape,
// zstd) into file:// with nixpushd and with nix copy, reports peak RSS,
// and the no-op re-push.
func BenchmarkClosure100k(b *testing.B) {
	testenv.RequireNix(b)
	const leaves, mids, shared = 100000, 1000, 10
	// Every run pushes into fresh directories, so the closure need not be
	// new: a fixed seed reuses the paths of the last run.
	began := time.Now()
	paths := lbEvalSeed(b, "scale-closure100k-v1", lbWideExpr, "--arg", "leaves", strconv.Itoa(leaves), "--arg", "mids", strconv.Itoa(mids), "--arg", "shared", strconv.Itoa(shared))
	top := paths[0]
	fmt.Printf("\nclosure of %d paths ready in %.1f s\n", len(paths), time.Since(began).Seconds())
	secret, public := testenv.GenerateKey(b, b.TempDir(), "scale-1")
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		copyCmd := exec.Command("nix", "copy", "--to", "file://"+dir+"?compression=zstd&secret-key="+secret, top)
		copyCmd.Env = append(os.Environ(), testenv.NixEnv()...)
		nixCopy := measure(b, copyCmd)
		ours := b.TempDir()
		push := measure(b, pushCmd(nil, "--to", "file://"+ours, "--compression", "zstd", "--secret-key-file", secret, top))
		repush := measure(b, pushCmd(nil, "--to", "file://"+ours, "--compression", "zstd", "--secret-key-file", secret, top))
		if out, err := testenv.CopyFrom(b, "file://"+ours, []string{public}, top); err != nil {
			b.Fatalf("nix rejects the cache: %v\n%s", err, out)
		}
		fmt.Printf("\n%d-path closure, zstd, into file://\n%-28s %8s %8s %8s\n", len(paths), "", "wall s", "CPU s", "RSS MiB")
		for _, r := range []struct {
			name string
			m    measured
		}{{"nix copy --to file://", nixCopy}, {"nixpushd push", push}, {"nixpushd push (no-op)", repush}} {
			fmt.Printf("%-28s %8.1f %8.1f %8.0f\n", r.name, r.m.wall.Seconds(), r.m.cpu.Seconds(), r.m.rssMiB)
		}
		fmt.Printf("nixpushd is %.2fx faster than nix copy; peak RSS %.0f MiB\n", nixCopy.wall.Seconds()/push.wall.Seconds(), push.rssMiB)
		b.ReportMetric(nixCopy.wall.Seconds()/push.wall.Seconds(), "speedup-vs-nix-copy")
		b.ReportMetric(push.rssMiB, "peak-rss-MiB")
	}
}

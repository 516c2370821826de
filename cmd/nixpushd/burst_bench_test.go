package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// burstExpr is the DAG of issue #21: n small paths made at evaluation
// time with builtins.toFile, each referring to three earlier ones (depth
// about log n), all in the closure of the root it returns.
const burstExpr = `{ n ? 5000, seed }:
let
  ps = builtins.genList mk n;
  at = builtins.elemAt ps;
  mk = i: builtins.toFile "mp-${seed}-${toString i}"
    ("${seed} ${toString i}\n" + (if i == 0 then "" else "${at (i / 2)}\n${at (i / 3)}\n${at ((i * 7) / 11)}\n"));
in builtins.toFile "mp-${seed}-root" (builtins.concatStringsSep "\n" ps)
`

// BenchmarkBurst runs the procedure of issue #21, side by side:
//
//   - one-shot: `nixpushd push` (xz) of a 5,001-path DAG that already
//     exists, into a fresh bucket;
//   - the seeds' workflow on the same DAG (nix copy to file:// with xz,
//     then mc mirror into a fresh bucket), mc mirror being the server's
//     floor for that many objects;
//   - daemon: `nixpushd daemon --watch-store --state-dir FRESH --socket …`
//     (with --include for the DAG's names only: see burstDaemon) into
//     another fresh bucket; two seconds after it starts, a second DAG
//     is evaluated into the store; wall time from the start of that
//     evaluation until the root's narinfo is in the bucket, daemon CPU
//     (utime+stime from /proc) over the same window, per path.
//
// It repeats BURST_RUNS times (default 3) and prints each run and the
// spread (min–max) of the ratios. BURST_BASE=/path/to/nixpushd also runs
// that binary, alternating with the one under test in every run, so that
// a change is measured against its base in one sitting. BURST_PROFILE=DIR
// writes each daemon's CPU profile there (NIXPUSHD_CPU_PROFILE).
// BURST_N changes n (default 5000).
func BenchmarkBurst(b *testing.B) {
	m := requireBench(b)
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("BURST_RUNS")); err == nil && v > 0 {
		runs = v
	}
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("BURST_N")); err == nil && v > 0 {
		n = v
	}
	type binary struct{ name, path string }
	bins := []binary{{"new", bin}}
	if base := os.Getenv("BURST_BASE"); base != "" {
		bins = append([]binary{{"base", base}}, bins...)
	}
	profDir := os.Getenv("BURST_PROFILE")
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	file := filepath.Join(b.TempDir(), "many-paths.nix")
	if err := os.WriteFile(file, []byte(burstExpr), 0o644); err != nil {
		b.Fatal(err)
	}
	eval := func() string {
		seed := fmt.Sprintf("burst-%d", time.Now().UnixNano())
		var root string
		out := testenv.Nix(b, "nix-instantiate", "--eval", "--read-write-mode", file, "--argstr", "seed", seed, "--arg", "n", strconv.Itoa(n))
		if err := json.Unmarshal(out, &root); err != nil {
			b.Fatalf("nix-instantiate output %q: %v", out, err)
		}
		return root
	}
	secret, _ := testenv.GenerateKey(b, b.TempDir(), "burst-1")
	paths := n + 1

	type result struct {
		push, daemonWall, daemonCPU, mirror, seeds time.Duration
		pushCPU, eval                              time.Duration
	}
	all := map[string][]result{}
	for i := 0; i < b.N; i++ {
		for run := 0; run < runs; run++ {
			top := eval()
			// The seeds' workflow, once per run: both binaries are
			// compared with the same floor.
			seedsCache := m.NewCache(b, "")
			dir := b.TempDir()
			copyCmd := exec.Command("nix", "copy", "--to", "file://"+dir+"?compression=xz&secret-key="+secret, top)
			copyCmd.Env = append(os.Environ(), testenv.NixEnv()...)
			nixCopy := measure(b, copyCmd)
			mirror := measure(b, m.MCCommand(context.Background(), "mirror", "--quiet", dir, testenv.MCAlias+"/"+seedsCache.Bucket))
			for k, bn := range bins {
				if run%2 == 1 {
					bn = bins[len(bins)-1-k] // alternate the order
				}
				var r result
				r.mirror, r.seeds = mirror.wall, nixCopy.wall+mirror.wall
				c := m.NewCache(b, "")
				cmd := exec.Command(bn.path, "push", "--quiet", "--to", c.S3URL, "--secret-key-file", secret, top)
				cmd.Env = append(cleanEnv(), writerEnv(c)...)
				if profDir != "" {
					cmd.Env = append(cmd.Env, "NIXPUSHD_CPU_PROFILE="+filepath.Join(profDir, fmt.Sprintf("push-%s-%d.pprof", bn.name, run)))
				}
				pm := measure(b, cmd)
				r.push, r.pushCPU = pm.wall, pm.cpu
				if !c.Has(b, narinfoKey(b, top)) {
					b.Fatalf("%s push: no narinfo for the root", bn.name)
				}

				dc := m.NewCache(b, "")
				prof := ""
				if profDir != "" {
					prof = filepath.Join(profDir, fmt.Sprintf("daemon-%s-%d.pprof", bn.name, run))
				}
				wall, cpu, evalDur := burstDaemon(b, bn.path, dc, secret, prof, eval)
				r.daemonWall, r.daemonCPU, r.eval = wall, cpu, evalDur
				all[bn.name] = append(all[bn.name], r)
				fmt.Printf("run %d %-4s: push %.1f s (%.2f ms CPU/path), daemon %.1f s (%.2f ms CPU/path; the evaluation took %.1f s of it), mc mirror %.1f s, seeds %.1f s: daemon/push %.2f, push/mirror %.2f\n",
					run+1, bn.name, r.push.Seconds(), ms(r.pushCPU)/float64(paths), r.daemonWall.Seconds(), ms(r.daemonCPU)/float64(paths), r.eval.Seconds(),
					r.mirror.Seconds(), r.seeds.Seconds(), r.daemonWall.Seconds()/r.push.Seconds(), r.push.Seconds()/r.mirror.Seconds())
			}
		}
	}
	fmt.Printf("\nburst of %d paths (issue #21), xz, local MinIO, %d runs: min–max\n", paths, runs)
	for _, bn := range bins {
		rs := all[bn.name]
		spread := func(f func(result) float64) string {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return fmt.Sprintf("%.2f–%.2f", slices.Min(v), slices.Max(v))
		}
		fmt.Printf("%-4s daemon/one-shot wall %s; daemon CPU %s ms/path; one-shot/mc mirror %s; one-shot/seeds %s; push CPU %s ms/path; daemon done %s s after the evaluation\n", bn.name,
			spread(func(r result) float64 { return r.daemonWall.Seconds() / r.push.Seconds() }),
			spread(func(r result) float64 { return ms(r.daemonCPU) / float64(paths) }),
			spread(func(r result) float64 { return r.push.Seconds() / r.mirror.Seconds() }),
			spread(func(r result) float64 { return r.push.Seconds() / r.seeds.Seconds() }),
			spread(func(r result) float64 { return ms(r.pushCPU) / float64(paths) }),
			spread(func(r result) float64 { return (r.daemonWall - r.eval).Seconds() }))
		last := rs[len(rs)-1]
		b.ReportMetric(last.daemonWall.Seconds()/last.push.Seconds(), bn.name+"-daemon/push")
		b.ReportMetric(ms(last.daemonCPU)/float64(paths), bn.name+"-daemon-cpu-ms/path")
		b.ReportMetric(last.push.Seconds()/last.mirror.Seconds(), bn.name+"-push/mc-mirror")
	}
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// burstDaemon starts binary as a daemon with a fresh state directory,
// waits two seconds, evaluates a fresh DAG and returns the wall time from
// the start of the evaluation until the root's narinfo is in dc, and the
// daemon's CPU over the same window, and how long the evaluation took
// (the daemon cannot finish before it: the root is registered last).
func burstDaemon(b *testing.B, binary string, dc *testenv.Cache, secret, prof string, eval func() string) (time.Duration, time.Duration, time.Duration) {
	b.Helper()
	state := b.TempDir()
	log, err := os.Create(filepath.Join(state, "daemon.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	// --include: on a shared machine other tests register paths in the
	// same store meanwhile, and a daemon pushing them (one run spent 96 s
	// of CPU on someone's 1 GiB NAR) measures them, not the burst. The
	// daemon still sees and sorts out every new path.
	cmd := exec.Command(binary, "daemon", "--watch-store", "--state-dir", state, "--socket", filepath.Join(state, "nixpushd.sock"),
		"--to", dc.S3URL, "--secret-key-file", secret, "--include", "^mp-burst-")
	cmd.Env = append(append(cleanEnv(), testenv.NixEnv()...), writerEnv(dc)...)
	if prof != "" {
		cmd.Env = append(cmd.Env, "NIXPUSHD_CPU_PROFILE="+prof)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	time.Sleep(2 * time.Second)
	cpu0 := procCPU(b, cmd.Process.Pid)
	start := time.Now()
	root := eval()
	evalDur := time.Since(start)
	key := narinfoKey(b, root)
	deadline := start.Add(15 * time.Minute)
	for !dc.Has(b, key) {
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(log.Name())
			b.Fatalf("daemon did not push %s in 15 min; log tail:\n%s", root, tail(string(raw), 3000))
		}
		select {
		case err := <-exited:
			raw, _ := os.ReadFile(log.Name())
			b.Fatalf("daemon exited: %v\n%s", err, tail(string(raw), 3000))
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), procCPU(b, cmd.Process.Pid) - cpu0, evalDur
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

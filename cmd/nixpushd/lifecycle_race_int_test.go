package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// rcLockStale is NIXPUSHD_LOCK_STALE for every process of these tests:
// short, so that the lock protocol's timings are exercised within seconds.
const rcLockStale = "NIXPUSHD_LOCK_STALE=4s"

// rcExpiryExpr is a leaf <- mid <- top closure with names unique to tag
// (so the daemon's --include can ignore every other test's builds), and
// "new", a path built later whose output references leaf directly.
func rcExpiryExpr(tag string) string {
	return fmt.Sprintf(`{ leafPath ? null }:
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-e" "-c" script ];
    seed = %q;
    PATH = "/usr/bin:/bin";
  };
  leaf = mk "rcexp-%[1]s-leaf" ''
    mkdir -p $out/bin
    head -c 300000 /dev/urandom | base64 > $out/data.txt
    printf '#!/bin/sh\necho leaf\n' > $out/bin/leaf
    chmod 0755 $out/bin/leaf
    ln -s data.txt $out/link
  '';
  mid = mk "rcexp-%[1]s-mid" "printf '%%s\n' ${leaf} > $out";
  top = mk "rcexp-%[1]s-top" "mkdir $out; printf '%%s\n' ${mid} > $out/mid-ref";
in
  if leafPath == null then [ top mid leaf ]
  else mk "rcexp-%[1]s-new" "printf 'new %%s\n' ${builtins.storePath leafPath} > $out"
`, tag)
}

// rcNarInfo reads key (a narinfo) with root credentials.
func rcNarInfo(t *testing.T, cache *testenv.Cache, key string) *nar.NarInfo {
	t.Helper()
	ni, err := nar.ParseNarInfo(cache.Get(t, key))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return ni
}

// rcPushedLine reports whether the daemon logged "pushed" for path.
func rcPushedLine(log, path string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "msg=pushed") && strings.Contains(line, "STORE_PATH="+path+" ") {
			return true
		}
	}
	return false
}

// rcReuploadLines returns the log lines saying path was uploaded again
// because the cache lost it.
func rcReuploadLines(log, path string) []string {
	re := regexp.MustCompile(`(?i)again|re-?upload`)
	var lines []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "STORE_PATH="+path) && re.MatchString(line) {
			lines = append(lines, line)
		}
	}
	return lines
}

// rcVerify runs `nixpushd verify` with the writer's credentials and
// requires no problems.
func rcVerify(t *testing.T, cache *testenv.Cache, public string) {
	t.Helper()
	out, err := nixpushd(t, append(writerEnv(cache), rcLockStale), "verify", "--to", cache.S3URL, "--trusted-public-keys", public)
	if err != nil || !strings.Contains(out, "no problems") {
		t.Errorf("verify: %v\n%s", err, out)
	} else {
		t.Logf("verify: %s", strings.TrimSpace(out))
	}
}

// The scenario with the daemon: a closure is pushed, an expiry
// rule deletes one dependency (narinfo and NAR), and a new path that
// refers to that dependency is built. The daemon, which remembers the
// dependency as present, must see that it is gone now and upload it again
// before the new narinfo; otherwise Nix fails with "path ... is not valid".
func TestDaemonReuploadsExpiredDependency(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "")
	secret, public := testenv.GenerateKey(t, t.TempDir(), "expiry-1")
	tag := fmt.Sprintf("%x", rand.Uint64())
	expr := rcExpiryExpr(tag)

	d := startDaemonProc(t, append(writerEnv(cache), rcLockStale), "",
		append(s3Args(cache, secret), "--watch-store", "--include", "^rcexp-"+tag+"-")...)

	// (1) A closure, pushed by the watcher.
	paths := testenv.BuildExpr(t, expr)
	var top, mid, leaf string
	for _, p := range paths {
		switch {
		case strings.HasSuffix(p, "-top"):
			top = p
		case strings.HasSuffix(p, "-mid"):
			mid = p
		case strings.HasSuffix(p, "-leaf"):
			leaf = p
		}
	}
	if len(paths) != 3 || top == "" || mid == "" || leaf == "" {
		t.Fatalf("built %q, want top, mid, leaf", paths)
	}
	leafKey := narinfoKey(t, leaf)
	waitFor(t, 60*time.Second, "the closure in the cache", func() bool {
		return cache.Has(t, narinfoKey(t, top)) && cache.Has(t, narinfoKey(t, mid)) && cache.Has(t, leafKey)
	})
	// Let every queue item (leaf, mid and top are separate roots) finish,
	// so the daemon is idle and remembers leaf as present.
	waitFor(t, 60*time.Second, "the daemon to go idle", func() bool {
		st := d.status()
		return st["pending"].(float64) == 0 && st["in_flight"].(float64) == 0 && rcPushedLine(d.out.String(), top)
	})

	// (2) Expiry: the leaf's narinfo and NAR go, as a lifecycle rule
	// would delete them (with no regard for closures).
	oldInfo := rcNarInfo(t, cache, leafKey)
	root := m.RootClient(t)
	for _, key := range []string{leafKey, oldInfo.URL} {
		if err := root.RemoveObject(t.Context(), cache.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("rm %s: %v", key, err)
		}
	}
	if cache.Has(t, leafKey) || cache.Has(t, oldInfo.URL) {
		t.Fatal("the leaf is still in the bucket after rm")
	}
	logBefore := len(d.out.String())

	// (3) A new path referring to the expired leaf.
	newPaths := testenv.BuildExpr(t, expr, "--argstr", "leafPath", leaf)
	if len(newPaths) != 1 {
		t.Fatalf("built %q, want one path", newPaths)
	}
	newPath := newPaths[0]
	if refs := strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--references", newPath))); len(refs) != 1 || refs[0] != leaf {
		t.Fatalf("references of %s = %q, want just %s", newPath, refs, leaf)
	}
	waitFor(t, 60*time.Second, "the new path pushed", func() bool {
		return cache.Has(t, narinfoKey(t, newPath)) && rcPushedLine(d.out.String(), newPath)
	})
	newLog := d.out.String()[logBefore:]

	if !cache.Has(t, leafKey) {
		t.Fatalf("the daemon published %s while its reference %s is missing from the cache; daemon log since the expiry:\n%s", newPath, leaf, newLog)
	}
	info := rcNarInfo(t, cache, leafKey)
	if !cache.Has(t, info.URL) {
		t.Errorf("the leaf's narinfo is back but its NAR %s is not", info.URL)
	}
	if info.URL != oldInfo.URL {
		t.Logf("the re-uploaded NAR has another name: %s (was %s)", info.URL, oldInfo.URL)
	}
	if lines := rcReuploadLines(newLog, leaf); len(lines) == 0 {
		t.Errorf("the daemon's log does not mention uploading %s again:\n%s", leaf, newLog)
	} else {
		t.Logf("daemon: %s", lines[0])
	}
	// The order matters too: the leaf's narinfo is older than the new one.
	objs := rcListTimes(t, m, cache.Bucket)
	if lt, nt := objs[leafKey], objs[narinfoKey(t, newPath)]; lt.After(nt) {
		t.Errorf("the leaf's narinfo (%v) was written after its dependent's (%v)", lt, nt)
	}

	if out, err := testenv.Substitute(t, cache.HTTPURL, []string{public}, newPath); err != nil {
		t.Fatalf("nix-store -r of the new path from the cache: %v\n%s", err, out)
	}
	if out, err := testenv.Substitute(t, cache.HTTPURL, []string{public}, top); err != nil {
		t.Errorf("nix-store -r of the old closure after the re-upload: %v\n%s", err, out)
	}
	rcVerify(t, cache, public)
	assertBucketConsistent(t, cache)
	d.stop()
}

// rcListTimes lists the bucket with root credentials: key → Last-Modified
// (millisecond resolution, unlike a HEAD).
func rcListTimes(t *testing.T, m *testenv.MinIO, bucket string) map[string]time.Time {
	t.Helper()
	objs, err := rcList(t.Context(), m.RootClient(t), bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func rcList(ctx context.Context, cl *minio.Client, bucket, prefix string) (map[string]time.Time, error) {
	objs := map[string]time.Time{}
	for o := range cl.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		objs[o.Key] = o.LastModified
	}
	return objs, nil
}

// rcRaceSet is the overlapping closures TestGCRacingPushers pushes.
type rcRaceSet struct {
	Leaves, Mids, Tops []string
}

// rcBuildRaceSet adds, with builtins.toFile (no builds: instant), 8
// leaves, 4 mids each referring to 3 leaves, and 8 tops each referring
// to 2 mids and a leaf: closures overlap in every way.
func rcBuildRaceSet(t *testing.T) rcRaceSet {
	t.Helper()
	seed := fmt.Sprintf("%x-%d", rand.Uint64(), time.Now().UnixNano())
	expr := fmt.Sprintf(`let
  seed = %q;
  leaf = i: builtins.toFile "rcrace-leaf-${toString i}" "leaf ${toString i} ${seed}\n${builtins.concatStringsSep "" (builtins.genList (n: "filler line ${toString n} of leaf ${toString i}\n") 200)}";
  leaves = builtins.genList leaf 8;
  at = l: i: builtins.elemAt l (i - (i / builtins.length l) * builtins.length l);
  mid = k: builtins.toFile "rcrace-mid-${toString k}" "mid ${toString k} ${seed}\n${at leaves (2 * k)}\n${at leaves (2 * k + 1)}\n${at leaves (2 * k + 2)}\n";
  mids = builtins.genList mid 4;
  top = j: builtins.toFile "rcrace-top-${toString j}" "top ${toString j} ${seed}\n${at mids j}\n${at mids (j + 1)}\n${at leaves (3 * j)}\n";
  tops = builtins.genList top 8;
in { inherit leaves mids tops; }
`, seed)
	file := filepath.Join(t.TempDir(), "race.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	out := testenv.Nix(t, "nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", file)
	var set rcRaceSet
	if err := json.Unmarshal(out, &set); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	all := append(append(append([]string(nil), set.Leaves...), set.Mids...), set.Tops...)
	if len(all) != 20 {
		t.Fatalf("race set: %q", all)
	}
	// toFile registered them: make sure, since the pushers read the DB.
	testenv.Nix(t, "nix-store", append([]string{"--check-validity"}, all...)...)
	for _, top := range set.Tops {
		if n := len(strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--requisites", top)))); n < 6 {
			t.Fatalf("closure of %s has %d paths", top, n)
		}
	}
	return set
}

// rcDelayProxy forwards TCP connections to target, holding each chunk a
// client sends for delay: every request pays a round trip, as against a
// real S3 endpoint, which widens the windows between a process's checks
// and its writes. S3 signatures survive: the Host header is the proxy's,
// as the client signed it.
func rcDelayProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if add && conns == nil {
			return false
		}
		if add {
			conns[c] = true
		} else {
			delete(conns, c)
		}
		return true
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !track(c, true) || !track(s, true) {
				c.Close()
				s.Close()
				return
			}
			wg.Add(2)
			go func() { // server → client, at once
				defer wg.Done()
				io.Copy(c, s)
				c.Close()
				track(c, false)
			}()
			go func() { // client → server, late
				defer wg.Done()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, werr := s.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				s.Close()
				track(s, false)
			}()
		}
	}()
	return ln.Addr().String()
}

// rcProcStats collects what the background loops saw.
type rcProcStats struct {
	mu        sync.Mutex
	runs      int
	failures  []string
	reuploads int
	waited    int // pushers that stepped aside for gc
	deletedNI int // gc: narinfos deleted
	deletedNA int // gc: NARs deleted
	gcRuns    int
}

func (s *rcProcStats) fail(format string, args ...any) {
	s.mu.Lock()
	s.failures = append(s.failures, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// rcRun runs the nixpushd binary like nixpushd(), but usable from any
// goroutine, and killed after a minute: a hung pusher fails the test
// instead of hanging it.
func rcRun(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after a minute, killed: %w", err)
	}
	return out.String(), err
}

// rcPushLoop runs `nixpushd push` of one or two random tops at a time,
// with random pauses, until stop is closed.
func rcPushLoop(id int, env []string, args []string, tops []string, stop <-chan struct{}, st *rcProcStats) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for {
		// Pauses let whole families age past --keep together, so that gc
		// also takes the shared dependencies, not only single tops.
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(rng.IntN(600)) * time.Millisecond):
		}
		roots := []string{tops[rng.IntN(len(tops))]}
		if rng.IntN(2) == 0 {
			roots = append(roots, tops[rng.IntN(len(tops))])
		}
		out, err := rcRun(env, append(append([]string{"push"}, args...), roots...)...)
		st.mu.Lock()
		st.runs++
		st.reuploads += strings.Count(out, "uploading it again")
		st.waited += strings.Count(out, "gc holds the cache")
		st.mu.Unlock()
		if err != nil {
			st.fail("pusher %d: push %s: %v\n%s", id, strings.Join(roots, " "), err, out)
		}
	}
}

var rcGCSummary = regexp.MustCompile(`deleted (\d+) narinfos?, (\d+) NARs?`)

// rcGCLoop runs `nixpushd gc` with short keep and grace until stop is
// closed, a few hundred milliseconds apart.
func rcGCLoop(env []string, args []string, stop <-chan struct{}, st *rcProcStats, logf func(string, ...any)) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
		}
		out, err := rcRun(env, append([]string{"gc"}, args...)...)
		st.mu.Lock()
		st.gcRuns++
		st.mu.Unlock()
		if err != nil {
			if strings.Contains(out, "could not be refreshed in time") {
				// A safety stop, not a failure: it deleted nothing unsafe.
				logf("gc stopped early: %s", strings.TrimSpace(out))
				continue
			}
			st.fail("gc: %v\n%s", err, out)
			continue
		}
		sm := rcGCSummary.FindStringSubmatch(out)
		if sm == nil {
			st.fail("gc: no summary in its output:\n%s", out)
			continue
		}
		ni, _ := strconv.Atoi(sm[1])
		na, _ := strconv.Atoi(sm[2])
		st.mu.Lock()
		st.deletedNI += ni
		st.deletedNA += na
		st.mu.Unlock()
	}
}

// rcMonitor checks the invariant clients rely on while everything runs:
// no narinfo is ever in the bucket while one of its references' narinfos
// or its own NAR is not. A listing is not a snapshot, so a suspect from a
// listing is confirmed by a HEAD of the missing object, then a second
// listing showing the narinfo with the same Last-Modified (millisecond
// resolution): the narinfo existed, unchanged, from before the first
// listing until after the HEAD that found the other object missing.
type rcMonitor struct {
	cl     *minio.Client
	bucket string
	seen   map[string]rcSeen // narinfo key → what its last version said

	mu         sync.Mutex
	rounds     int
	suspects   int
	violations []string
}

type rcSeen struct {
	lm   time.Time
	refs []string // narinfo keys of the references (self excluded)
	url  string
}

func (mon *rcMonitor) loop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-time.After(150 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := mon.round(ctx)
		cancel()
		if err != nil {
			mon.mu.Lock()
			mon.violations = append(mon.violations, "monitor: "+err.Error())
			mon.mu.Unlock()
			return
		}
	}
}

func (mon *rcMonitor) round(ctx context.Context) error {
	objs, err := rcList(ctx, mon.cl, mon.bucket, "")
	if err != nil {
		return err
	}
	type suspect struct{ narinfo, missing string }
	var suspects []suspect
	for key, lm := range objs {
		if !strings.HasSuffix(key, ".narinfo") {
			continue
		}
		s, ok := mon.seen[key]
		if !ok || !s.lm.Equal(lm) {
			obj, err := mon.cl.GetObject(ctx, mon.bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			_, err = buf.ReadFrom(obj)
			obj.Close()
			if minio.ToErrorResponse(err).Code == "NoSuchKey" {
				continue // deleted since the listing
			}
			if err != nil {
				return fmt.Errorf("get %s: %w", key, err)
			}
			ni, err := nar.ParseNarInfo(buf.Bytes())
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			s = rcSeen{lm: lm, url: ni.URL}
			for _, r := range ni.References {
				rk := strings.SplitN(r, "-", 2)[0] + ".narinfo"
				if rk != key {
					s.refs = append(s.refs, rk)
				}
			}
			mon.seen[key] = s
		}
		for _, rk := range append([]string{s.url}, s.refs...) {
			if _, ok := objs[rk]; !ok {
				suspects = append(suspects, suspect{key, rk})
			}
		}
	}
	mon.mu.Lock()
	mon.rounds++
	mon.suspects += len(suspects)
	mon.mu.Unlock()
	for _, s := range suspects {
		_, err := mon.cl.StatObject(ctx, mon.bucket, s.missing, minio.StatObjectOptions{})
		if err == nil {
			continue // the listing passed it before it was written
		}
		if minio.ToErrorResponse(err).Code != "NoSuchKey" {
			return fmt.Errorf("stat %s: %w", s.missing, err)
		}
		again, err := rcList(ctx, mon.cl, mon.bucket, s.narinfo)
		if err != nil {
			return err
		}
		if lm, ok := again[s.narinfo]; ok && lm.Equal(objs[s.narinfo]) {
			mon.mu.Lock()
			mon.violations = append(mon.violations, fmt.Sprintf("%s (written %s) was in the bucket while %s was not (checked at %s)",
				s.narinfo, lm.Format("15:04:05.000"), s.missing, time.Now().UTC().Format("15:04:05.000")))
			mon.mu.Unlock()
		}
	}
	return nil
}

// selfCheck proves the monitor is not blind: a copy of a real narinfo
// (of sample) pointing at a NAR and a reference that do not exist must be
// reported twice. The copy is removed and the monitor reset afterwards.
func (mon *rcMonitor) selfCheck(t *testing.T, cache *testenv.Cache, sample string) {
	t.Helper()
	ni := rcNarInfo(t, cache, narinfoKey(t, sample))
	ni.URL = "nar/" + strings.Repeat("0", 52) + ".nar.xz"
	ni.References = append(ni.References, strings.Repeat("0", 32)+"-rcrace-missing")
	text, err := ni.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("1", 32) + ".narinfo"
	if _, err := mon.cl.PutObject(t.Context(), mon.bucket, key, bytes.NewReader(text), int64(len(text)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	err = mon.round(t.Context())
	if rmErr := mon.cl.RemoveObject(t.Context(), mon.bucket, key, minio.RemoveObjectOptions{}); rmErr != nil {
		t.Fatal(rmErr)
	}
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if err != nil || len(mon.violations) != 2 {
		t.Fatalf("monitor self-check: want 2 violations for a broken narinfo, got %q (err %v)", mon.violations, err)
	}
	mon.violations, mon.rounds, mon.suspects = nil, 0, 0
	delete(mon.seen, key)
}

// Pushers and gc at once, in one bucket: three `nixpushd push` loops push
// overlapping closures while `nixpushd gc --keep 2s --grace 1s` runs over
// and over. The shared dependencies were pushed first and aged past
// --keep, so gc wants to delete exactly what the pushers are about to
// refer to. Throughout, no narinfo may be in the bucket without its
// references and NAR; at the end every top, pushed once more, must be
// substitutable by real Nix and verify must find nothing wrong.
func TestGCRacingPushers(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "")
	dir := t.TempDir()
	secret, public := testenv.GenerateKey(t, dir, "race-1")
	set := rcBuildRaceSet(t)

	// gc needs s3:DeleteObject, which the writer lacks: its own user, given
	// as a credentials file as systemd would pass it.
	gcKey, gcSecret := cache.NewGCUser(t)
	gcCreds := filepath.Join(dir, "gc.env")
	if err := os.WriteFile(gcCreds, []byte(fmt.Sprintf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", gcKey, gcSecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The loops reach MinIO through a proxy with S3-like latency.
	slowURL := strings.Replace(cache.S3URL, "endpoint="+cache.Endpoint, "endpoint="+rcDelayProxy(t, cache.Endpoint, 15*time.Millisecond), 1)
	pushEnv := append(writerEnv(cache), rcLockStale)
	pushArgs := []string{"--to", cache.S3URL, "--secret-key-file", secret, "--jobs", "1", "--quiet"}
	slowPushArgs := append([]string{"--to", slowURL}, pushArgs[2:]...)
	gcEnv := []string{rcLockStale}
	gcArgs := []string{"--to", slowURL, "--keep", "2s", "--grace", "1s", "--credentials-file", gcCreds}

	// The shared dependencies go up first and age past --keep: gc
	// candidates, unless a recent top refers to them.
	out, err := nixpushd(t, pushEnv, append(append([]string{"push"}, pushArgs...), append(set.Mids, set.Leaves...)...)...)
	if err != nil {
		t.Fatalf("pre-populating: %v\n%s", err, out)
	}
	aging := time.Now()
	mon := &rcMonitor{cl: m.RootClient(t), bucket: cache.Bucket, seen: map[string]rcSeen{}}
	mon.selfCheck(t, cache, set.Mids[0])
	time.Sleep(2200*time.Millisecond - time.Since(aging))

	st := &rcProcStats{}
	stopMon, monDone := make(chan struct{}), make(chan struct{})
	go mon.loop(stopMon, monDone)
	stopPush, stopGC := make(chan struct{}), make(chan struct{})
	var pushers, gcs sync.WaitGroup
	for i := range 3 {
		pushers.Add(1)
		go func() {
			defer pushers.Done()
			rcPushLoop(i, pushEnv, slowPushArgs, set.Tops, stopPush, st)
		}()
	}
	gcs.Add(1)
	go func() {
		defer gcs.Done()
		rcGCLoop(gcEnv, gcArgs, stopGC, st, t.Logf)
	}()
	began := time.Now()
	time.Sleep(16 * time.Second)
	close(stopGC)
	gcs.Wait()
	close(stopPush)
	pushers.Wait()
	t.Logf("race ran %v: %d pushes (%d re-uploads of lost references, %d waits for gc), %d gc runs deleting %d narinfos and %d NARs",
		time.Since(began).Round(time.Millisecond), st.runs, st.reuploads, st.waited, st.gcRuns, st.deletedNI, st.deletedNA)

	// Every top once more: a top found present is not looked into, so a
	// closure broken during the race would stay broken.
	out, err = nixpushd(t, pushEnv, append(append([]string{"push"}, pushArgs...), set.Tops...)...)
	if err != nil {
		t.Errorf("final push: %v\n%s", err, out)
	}
	close(stopMon)
	<-monDone
	mon.mu.Lock()
	t.Logf("monitor: %d rounds, %d suspects from listings, %d confirmed", mon.rounds, mon.suspects, len(mon.violations))
	for _, v := range mon.violations {
		t.Errorf("cache invalid during the race: %s", v)
	}
	mon.mu.Unlock()
	for _, f := range st.failures {
		t.Errorf("%s", f)
	}
	if st.deletedNI == 0 {
		t.Errorf("gc deleted no narinfo in %d runs: the race was not exercised", st.gcRuns)
	}
	if st.runs < 6 {
		t.Errorf("only %d pushes ran", st.runs)
	}
	if mon.rounds < 5 {
		t.Errorf("the monitor ran only %d rounds", mon.rounds)
	}

	rcVerify(t, cache, public)
	assertBucketConsistent(t, cache)
	if out, err := testenv.Substitute(t, cache.HTTPURL, []string{public}, set.Tops...); err != nil {
		t.Errorf("nix-store -r of every top from the cache: %v\n%s", err, out)
	}
}

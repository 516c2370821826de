package main

// Integration tests of the cache's life cycle: gc, pins and verify, run as
// the built binary against the shared MinIO, with real Nix building the
// closures and substituting from what is left.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/nar"
)

// lcResult is one run of the binary, stdout and stderr kept apart: verify
// prints problems on stdout and its summary on stderr.
type lcResult struct {
	stdout, stderr string
	code           int
}

func (r lcResult) String() string {
	return fmt.Sprintf("exit status %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// lcCmd is the command lcRun runs; env is added to a clean environment.
func lcCmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(cleanEnv(), testenv.NixEnv()...), env...)
	return cmd
}

func lcRun(t testing.TB, env []string, args ...string) lcResult {
	t.Helper()
	began := time.Now()
	defer func() { t.Logf("nixpushd %s took %v", args[0], time.Since(began)) }()
	cmd := lcCmd(env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := lcResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running nixpushd %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// lcCache is a cache with its two users: the writer (push, pin, verify
// --repair) and the gc user (the nixgc policy: the writer's permissions
// plus s3:DeleteObject), and a signing key.
type lcCache struct {
	*testenv.Cache
	gcKey, gcSecret string
	gcCredsFile     string // the gc user's --credentials-file
	secret, public  string
}

func lcNewCache(t *testing.T, m *testenv.MinIO) *lcCache {
	t.Helper()
	c := &lcCache{Cache: m.NewCache(t, "")}
	c.gcKey, c.gcSecret = c.NewGCUser(t)
	if c.gcKey == c.AccessKey {
		t.Fatalf("NewGCUser returned the writer's key %s", c.gcKey)
	}
	dir := t.TempDir()
	c.gcCredsFile = filepath.Join(dir, "nixgc.env")
	creds := fmt.Sprintf("# the nixgc user\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", c.gcKey, c.gcSecret)
	if err := os.WriteFile(c.gcCredsFile, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	c.secret, c.public = testenv.GenerateKey(t, dir, "lifecycle.test-1")
	return c
}

func (c *lcCache) writer() []string { return writerEnv(c.Cache) }

func (c *lcCache) gcEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + c.gcKey, "AWS_SECRET_ACCESS_KEY=" + c.gcSecret}
}

// push pushes paths' closures, signed, as the writer; it returns the output.
func (c *lcCache) push(t *testing.T, extra []string, paths ...string) string {
	t.Helper()
	args := append([]string{"push", "--to", c.S3URL, "--secret-key-file", c.secret, "--quiet"}, extra...)
	r := lcRun(t, c.writer(), append(args, paths...)...)
	if r.code != 0 {
		t.Fatalf("push: %v", r)
	}
	return r.stderr
}

// gc runs `nixpushd gc` with the gc user's credentials file.
func (c *lcCache) gc(t *testing.T, env []string, args ...string) lcResult {
	t.Helper()
	r := lcRun(t, env, append([]string{"gc", "--to", c.S3URL, "--credentials-file", c.gcCredsFile}, args...)...)
	t.Logf("gc %s: exit status %d: %s", strings.Join(args, " "), r.code, strings.TrimSpace(r.stderr))
	return r
}

// verify runs `nixpushd verify` as the writer, trusting the cache's key.
func (c *lcCache) verify(t *testing.T, args ...string) lcResult {
	t.Helper()
	return lcRun(t, c.writer(), append([]string{"verify", "--to", c.S3URL, "--trusted-public-keys", c.public}, args...)...)
}

// assertClean fails unless verify (and verify --full) find no problem.
func (c *lcCache) assertClean(t *testing.T, what string) {
	t.Helper()
	for _, full := range []bool{false, true} {
		var args []string
		if full {
			args = append(args, "--full")
		}
		r := c.verify(t, args...)
		if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no problems") {
			t.Errorf("%s: verify %s: want no problems, got %v", what, strings.Join(args, " "), r)
		}
	}
}

// narinfos is the set of hash parts with a narinfo in the bucket.
func (c *lcCache) narinfos(t testing.TB) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for k := range c.Objects(t) {
		if h, ok := strings.CutSuffix(k, ".narinfo"); ok {
			set[h] = true
		}
	}
	return set
}

// narinfo reads and parses the narinfo of store path p.
func (c *lcCache) narinfo(t testing.TB, p string) *nar.NarInfo {
	t.Helper()
	ni, err := nar.ParseNarInfo(c.Get(t, narinfoKey(t, p)))
	if err != nil {
		t.Fatalf("narinfo of %s: %v", p, err)
	}
	return ni
}

// lcHashes is the set of hash parts of store paths.
func lcHashes(t testing.TB, paths ...string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, p := range paths {
		set[strings.TrimSuffix(narinfoKey(t, p), ".narinfo")] = true
	}
	return set
}

// lcKeys are the sorted keys of a set, for messages and comparisons.
func lcKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// lcLeft is what gc may delete of the bucket's objects: all but the
// signing keys' records (cachekeys), which gc leaves alone. It fails t if
// the push's key record is gone.
func lcLeft[V any](t *testing.T, m map[string]V) []string {
	t.Helper()
	var out []string
	records := 0
	for _, k := range lcKeys(m) {
		if strings.HasPrefix(k, cachekeys.Prefix) {
			records++
			continue
		}
		out = append(out, k)
	}
	if records == 0 {
		t.Errorf("gc deleted the signing key's record (%s*): %q", cachekeys.Prefix, lcKeys(m))
	}
	return out
}

// lcSummary is gc's one-line summary on stderr.
type lcSummary struct {
	NarInfos, Roots, Pinned, Kept, DeletedNarInfos, DeletedNARs, DeletedOther int
}

var lcSummaryRE = regexp.MustCompile(`(\d+) narinfos?, (\d+) roots? \((\d+) pinned paths?\), (\d+) kept; deleted (\d+) narinfos?, (\d+) NARs?, (\d+) other objects?`)

func lcParseSummary(t *testing.T, r lcResult) lcSummary {
	t.Helper()
	all := lcSummaryRE.FindAllStringSubmatch(r.stderr, -1)
	if len(all) != 1 {
		t.Fatalf("want one gc summary line on stderr, found %d: %v", len(all), r)
	}
	var n [7]int
	for i := range n {
		n[i], _ = strconv.Atoi(all[0][i+1])
	}
	return lcSummary{n[0], n[1], n[2], n[3], n[4], n[5], n[6]}
}

// lcProblems parses verify's stdout ("<path>: <kind>: detail" lines) into
// sorted "<path> <kind>" strings.
func lcProblems(t *testing.T, stdout string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ": ", 3)
		if len(parts) != 3 {
			t.Errorf("verify printed a line that is not \"<path>: <kind>: detail\": %q", line)
			continue
		}
		out = append(out, parts[0]+" "+parts[1])
	}
	slices.Sort(out)
	return out
}

// lcEval evaluates expr (a function of { seed }) with a fresh seed in
// read-write mode, so that its builtins.toFile paths land in the store with
// their references registered, and returns the list of strings it yields.
// Much faster than building derivations when a test needs many paths.
func lcEval(t *testing.T, expr string, extra ...string) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "default.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	args := append([]string{"--read-write-mode", "--eval", "--strict", "--json", file, "--argstr", "seed", seed}, extra...)
	var paths []string
	if err := json.Unmarshal(testenv.Nix(t, "nix-instantiate", args...), &paths); err != nil {
		t.Fatalf("nix-instantiate output: %v", err)
	}
	for _, p := range paths {
		if _, err := nar.ParseStorePath(p); err != nil {
			t.Fatalf("not a store path: %q", p)
		}
	}
	return paths
}

// lcSharedExpr: two tops that share one leaf, each with a leaf of its own.
const lcSharedExpr = `{ seed }:
let
  shared = builtins.toFile "lc-shared" "shared leaf, seed ${seed}\n";
  aDep = builtins.toFile "lc-a-dep" "only in A, seed ${seed}\n";
  aTop = builtins.toFile "lc-a-top" "A: ${shared} ${aDep}\n";
  bDep = builtins.toFile "lc-b-dep" "only in B, seed ${seed}\n";
  bTop = builtins.toFile "lc-b-top" "B: ${shared} ${bDep}\n";
in [ aTop aDep shared bTop bDep ]
`

// lcDAGExpr: depth layers of width paths; node (i, j) refers to nodes j and
// j+1 (mod width) of layer i-1, and top to the whole last layer. gc must
// delete it in depth+1 rounds (referrers before references).
const lcDAGExpr = `{ seed, depth, width }:
let
  layers = builtins.genList (i: builtins.genList (j: mk i j) width) depth;
  at = i: j: builtins.elemAt (builtins.elemAt layers i) (j - width * (j / width));
  mk = i: j: builtins.toFile "lc-dag-${toString i}-${toString j}" (
    "seed ${seed}, node ${toString i}/${toString j}\n"
    + (if i == 0 then "" else "${at (i - 1) j} ${at (i - 1) (j + 1)}\n"));
  top = builtins.toFile "lc-dag-top" (toString (builtins.elemAt layers (depth - 1)));
in [ top ] ++ builtins.concatLists layers
`

// gc with the writer's credentials (no s3:DeleteObject) must refuse before
// touching anything, and say which permission is missing.
func TestGCRefusesWriterCredentials(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := lcNewCache(t, m)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	c.push(t, nil, cl.Top)
	before := c.Objects(t)

	r := lcRun(t, c.writer(), "gc", "--to", c.S3URL, "--keep", "0s", "--grace", "0s")
	if r.code == 0 {
		t.Fatalf("gc with the writer's credentials succeeded: %v", r)
	}
	if !strings.Contains(r.stderr, "s3:DeleteObject") {
		t.Errorf("gc's error does not name s3:DeleteObject: %v", r)
	}
	if lcSummaryRE.MatchString(r.stderr) {
		t.Errorf("the refused gc printed a summary: %v", r)
	}
	if after := c.Objects(t); !maps.Equal(before, after) {
		t.Errorf("the refused gc changed the bucket:\nbefore %v\nafter  %v", lcKeys(before), lcKeys(after))
	}
	if got := c.narinfos(t); !maps.Equal(got, lcHashes(t, cl.All...)) {
		t.Errorf("narinfos after the refused gc: %v", lcKeys(got))
	}
	// The same credentials can read: the refusal is about deleting only.
	c.assertClean(t, "after the refused gc")
}

// --dry-run lists exactly what the real run then deletes, and deletes
// nothing; the summary's numbers match the bucket.
func TestGCDryRunAndSummary(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := lcNewCache(t, m)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 2})
	c.push(t, nil, cl.Top)
	before := c.Objects(t)

	var narinfoKeys, narKeys, lockKeys []string
	for k := range before {
		switch {
		case strings.HasSuffix(k, ".narinfo"):
			narinfoKeys = append(narinfoKeys, k)
		case strings.HasPrefix(k, "nar/"):
			narKeys = append(narKeys, k)
		case strings.HasPrefix(k, "locks/"):
			lockKeys = append(lockKeys, k)
		case k == "nix-cache-info", strings.HasPrefix(k, cachekeys.Prefix):
		default:
			t.Errorf("unexpected object after push: %s", k)
		}
	}
	if len(narinfoKeys) != len(cl.All) || len(narKeys) != len(cl.All) {
		t.Fatalf("after pushing %d paths: %d narinfos, %d NARs", len(cl.All), len(narinfoKeys), len(narKeys))
	}

	// Dry run.
	r := c.gc(t, nil, "--keep", "0s", "--grace", "0s", "--dry-run")
	if r.code != 0 {
		t.Fatalf("gc --dry-run: %v", r)
	}
	lineRE := regexp.MustCompile(`^would delete (\S+) \((.*)\)$`)
	would := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		mm := lineRE.FindStringSubmatch(line)
		if mm == nil {
			t.Errorf("gc --dry-run printed %q", line)
			continue
		}
		if _, dup := would[mm[1]]; dup {
			t.Errorf("gc --dry-run listed %s twice", mm[1])
		}
		would[mm[1]] = mm[2]
	}
	wantWould := slices.Concat(narinfoKeys, narKeys)
	slices.Sort(wantWould)
	if got := lcKeys(would); !slices.Equal(got, wantWould) {
		t.Errorf("gc --dry-run would delete\n%q\nwant every narinfo and NAR:\n%q", got, wantWould)
	}
	for k, size := range would {
		if want := lifecycle.HumanBytes(before[k]); size != want {
			t.Errorf("gc --dry-run: %s (%s), the object has %s", k, size, want)
		}
	}
	if !strings.Contains(r.stderr, "gc --dry-run (nothing deleted)") {
		t.Errorf("gc --dry-run summary does not say nothing was deleted: %v", r)
	}
	s := lcParseSummary(t, r)
	n := len(cl.All)
	if want := (lcSummary{NarInfos: n, DeletedNarInfos: n, DeletedNARs: n}); s != want {
		t.Errorf("gc --dry-run summary %+v, want %+v", s, want)
	}
	if after := c.Objects(t); !maps.Equal(before, after) {
		t.Fatalf("gc --dry-run changed the bucket:\nbefore %v\nafter  %v", lcKeys(before), lcKeys(after))
	}

	// The real thing.
	r = c.gc(t, nil, "--keep", "0s", "--grace", "0s")
	if r.code != 0 {
		t.Fatalf("gc: %v", r)
	}
	if strings.Contains(r.stdout, "would delete") {
		t.Errorf("gc without --dry-run printed would-delete lines: %v", r)
	}
	s = lcParseSummary(t, r)
	// "Other" are the pushers' released shared locks (the writer cannot
	// delete them); gc's own lock goes on release, uncounted.
	if want := (lcSummary{NarInfos: n, DeletedNarInfos: n, DeletedNARs: n, DeletedOther: len(lockKeys)}); s != want {
		t.Errorf("gc summary %+v, want %+v (%d lock objects before: %q)", s, want, len(lockKeys), lockKeys)
	}
	// The writer may not delete: its released shared locks are left for
	// gc, which says how many it removed.
	if len(lockKeys) == 0 || !strings.HasPrefix(lockKeys[0], "locks/shared-") {
		t.Errorf("the writer's push left no released shared lock: %q", lockKeys)
	} else if want := fmt.Sprintf(" other objects? \\(%d leftover locks?\\)", len(lockKeys)); !regexp.MustCompile(want).MatchString(r.stderr) {
		t.Errorf("gc does not count the %d leftover locks it removed: %v", len(lockKeys), r)
	}
	if after := c.Objects(t); !slices.Equal(lcLeft(t, after), []string{"nix-cache-info"}) {
		t.Errorf("after gc --keep 0s --grace 0s the bucket holds %q, want only nix-cache-info and the key record", lcKeys(after))
	}
	// An empty cache is a valid one.
	c.assertClean(t, "after gc emptied the cache")
	if out, err := testenv.CopyFrom(t, c.HTTPURL, []string{c.public}, cl.Top); err == nil {
		t.Errorf("Nix still copied %s after gc deleted it:\n%s", cl.Top, out)
	}
}

// Recent narinfos are roots, and their whole closure stays, however old:
// the leaf B shares with A was written with A, before --keep, and must
// survive with B while A's own paths go.
func TestGCKeepsClosureOfRecentRoots(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := lcNewCache(t, m)
	p := lcEval(t, lcSharedExpr)
	aTop, aDep, shared, bTop, bDep := p[0], p[1], p[2], p[3], p[4]
	refs := strings.Fields(string(testenv.Nix(t, "nix-store", "--query", "--references", bTop)))
	if !slices.Contains(refs, shared) || !slices.Contains(refs, bDep) {
		t.Fatalf("references of %s: %q, want %s and %s", bTop, refs, shared, bDep)
	}

	const keep = 5 * time.Second
	c.push(t, nil, aTop)
	stat := func(p string) time.Time {
		t.Helper()
		info, err := m.RootClient(t).StatObject(t.Context(), c.Bucket, narinfoKey(t, p), minio.StatObjectOptions{})
		if err != nil {
			t.Fatalf("stat the narinfo of %s: %v", p, err)
		}
		return info.LastModified
	}
	sharedWritten := stat(shared)
	time.Sleep(keep + time.Second)
	out := c.push(t, nil, bTop)
	if !strings.Contains(out, "2 uploaded, 1 already cached") {
		t.Errorf("pushing B: want the shared leaf found in the cache:\n%s", out)
	}
	if got := stat(shared); !got.Equal(sharedWritten) {
		t.Fatalf("pushing B rewrote the shared leaf's narinfo (%v, was %v): the test needs it old", got, sharedWritten)
	}
	pushedB := time.Now()

	r := c.gc(t, nil, "--keep", "5s", "--grace", "0s")
	if r.code != 0 {
		t.Fatalf("gc: %v", r)
	}
	if took := time.Since(pushedB); took > keep-time.Second {
		t.Logf("warning: gc ran %v after B's push, close to --keep %v", took, keep)
	}
	s := lcParseSummary(t, r)
	if s.NarInfos != 5 || s.Roots != 2 || s.Pinned != 0 || s.Kept != 3 || s.DeletedNarInfos != 2 || s.DeletedNARs != 2 {
		t.Errorf("gc summary %+v, want 5 narinfos, 2 roots, 0 pinned, 3 kept, 2 narinfos and 2 NARs deleted", s)
	}
	if got, want := c.narinfos(t), lcHashes(t, bTop, bDep, shared); !maps.Equal(got, want) {
		t.Errorf("narinfos after gc: %v, want B's closure %v (A: %s %s)", lcKeys(got), lcKeys(want), aTop, aDep)
	}
	// The NARs left are exactly those of the kept narinfos.
	keptNARs := map[string]bool{}
	for _, p := range []string{bTop, bDep, shared} {
		keptNARs[c.narinfo(t, p).URL] = true
	}
	gotNARs := map[string]bool{}
	for k := range c.Objects(t) {
		if strings.HasPrefix(k, "nar/") {
			gotNARs[k] = true
		}
	}
	if !maps.Equal(gotNARs, keptNARs) {
		t.Errorf("NARs after gc: %v, want those of B's closure: %v", lcKeys(gotNARs), lcKeys(keptNARs))
	}

	c.assertClean(t, "after gc")
	if out, err := testenv.Substitute(t, c.HTTPURL, []string{c.public}, bTop); err != nil {
		t.Errorf("Nix cannot substitute B after gc: %v\n%s", err, out)
	}
	if out, err := testenv.CopyFrom(t, c.HTTPURL, []string{c.public}, aTop); err == nil {
		t.Errorf("Nix still copied A after gc deleted it:\n%s", out)
	}
}

// A pinned closure survives gc --keep 0s; unpinned, the next gc takes it.
func TestPinsSurviveAggressiveGC(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := lcNewCache(t, m)
	pinned := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	other := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 1})

	// pin add pushes the closure itself, then writes the pin.
	r := lcRun(t, c.writer(), "pin", "add", "--to", c.S3URL, "--secret-key-file", c.secret, "--quiet", "sys", pinned.Top)
	if r.code != 0 {
		t.Fatalf("pin add: %v", r)
	}
	if got := string(c.Get(t, "pins/sys")); got != pinned.Top+"\n" {
		t.Errorf("pins/sys holds %q, want %q", got, pinned.Top+"\n")
	}
	if got := c.narinfos(t); !maps.Equal(got, lcHashes(t, pinned.All...)) {
		t.Errorf("after pin add the cache has %v, want the pinned closure", lcKeys(got))
	}
	c.push(t, nil, other.Top)

	r = c.gc(t, nil, "--keep", "0s", "--grace", "0s")
	if r.code != 0 {
		t.Fatalf("gc: %v", r)
	}
	n, o := len(pinned.All), len(other.All)
	if s, want := lcParseSummary(t, r), (lcSummary{NarInfos: n + o, Roots: 1, Pinned: 1, Kept: n, DeletedNarInfos: o, DeletedNARs: o}); s.NarInfos != want.NarInfos || s.Roots != want.Roots ||
		s.Pinned != want.Pinned || s.Kept != want.Kept || s.DeletedNarInfos != want.DeletedNarInfos || s.DeletedNARs != want.DeletedNARs {
		t.Errorf("gc summary %+v, want %+v (other objects aside)", s, want)
	}
	if got := c.narinfos(t); !maps.Equal(got, lcHashes(t, pinned.All...)) {
		t.Errorf("after gc the cache has %v, want exactly the pinned closure %q", lcKeys(got), pinned.All)
	}
	if !c.Has(t, "pins/sys") {
		t.Error("gc deleted the pin")
	}

	r = lcRun(t, c.writer(), "pin", "list", "--to", c.S3URL)
	if r.code != 0 {
		t.Fatalf("pin list: %v", r)
	}
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 1 ||
		len(strings.Fields(lines[0])) != 3 || strings.Fields(lines[0])[0] != "sys" || strings.Fields(lines[0])[1] != pinned.Top {
		t.Errorf("pin list: want one line \"sys %s TIME\", got %v", pinned.Top, r)
	}
	c.assertClean(t, "after gc with a pin")
	if out, err := testenv.Substitute(t, c.HTTPURL, []string{c.public}, pinned.Top); err != nil {
		t.Errorf("Nix cannot substitute the pinned path after gc: %v\n%s", err, out)
	}
	if out, err := testenv.CopyFrom(t, c.HTTPURL, []string{c.public}, other.Top); err == nil {
		t.Errorf("Nix still copied the unpinned closure after gc:\n%s", out)
	}

	// The writer cannot delete: pin rm empties the pin, which gc clears.
	r = lcRun(t, c.writer(), "pin", "rm", "--to", c.S3URL, "sys")
	if r.code != 0 {
		t.Fatalf("pin rm: %v", r)
	}
	if r = lcRun(t, c.writer(), "pin", "list", "--to", c.S3URL); r.code != 0 || strings.TrimSpace(r.stdout) != "" {
		t.Errorf("pin list after pin rm: want nothing, got %v", r)
	}
	r = c.gc(t, nil, "--keep", "0s", "--grace", "0s")
	if r.code != 0 {
		t.Fatalf("gc after pin rm: %v", r)
	}
	if s := lcParseSummary(t, r); s.Roots != 0 || s.Pinned != 0 || s.Kept != 0 || s.DeletedNarInfos != n || s.DeletedNARs != n {
		t.Errorf("gc after pin rm: summary %+v, want 0 roots, %d narinfos and NARs deleted", s, n)
	}
	if got := lcLeft(t, c.Objects(t)); !slices.Equal(got, []string{"nix-cache-info"}) {
		t.Errorf("after pin rm and gc the bucket holds %q, want only nix-cache-info", got)
	}
	if out, err := testenv.CopyFrom(t, c.HTTPURL, []string{c.public}, pinned.Top); err == nil {
		t.Errorf("Nix still copied the formerly pinned closure:\n%s", out)
	}
}

// Damage of four kinds, done by hand as root, is each reported against the
// right path; --repair uploads again from the local store and the cache
// is whole.
func TestVerifyDetectsDamageAndRepairs(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := lcNewCache(t, m)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: 1, ExtraLeaves: 2})
	c.push(t, nil, cl.Top)
	c.assertClean(t, "after push")

	root := m.RootClient(t)
	ctx := t.Context()
	put := func(key string, b []byte, ctype string) {
		t.Helper()
		if _, err := root.PutObject(ctx, c.Bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{ContentType: ctype}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	remove := func(key string) {
		t.Helper()
		if err := root.RemoveObject(ctx, c.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("remove %s: %v", key, err)
		}
		if c.Has(t, key) {
			t.Fatalf("%s still there", key)
		}
	}
	urls := map[string]string{}
	for _, p := range cl.All {
		urls[p] = c.narinfo(t, p).URL
	}
	if len(slices.Compact(slices.Sorted(maps.Values(urls)))) != len(cl.All) {
		t.Fatalf("paths share NAR files: %v", urls)
	}

	// (a) a NAR gone.
	remove(urls[cl.Extra[0]])
	// (b) a dependency's narinfo gone: mid refers to leaf.
	remove(narinfoKey(t, cl.Leaf))
	// (c) a truncated NAR.
	nar1 := c.Get(t, urls[cl.Extra[1]])
	put(urls[cl.Extra[1]], nar1[:len(nar1)/2], "application/x-nix-nar")
	// (d) a bad signature: one character of top's Sig changed.
	ni := string(c.Get(t, narinfoKey(t, cl.Top)))
	sigAt := strings.Index(ni, "\nSig: ")
	if sigAt < 0 {
		t.Fatalf("top's narinfo is unsigned:\n%s", ni)
	}
	colon := sigAt + strings.Index(ni[sigAt:], "lifecycle.test-1:") + len("lifecycle.test-1:")
	i := colon + 10
	flipped := byte('A')
	if ni[i] == 'A' {
		flipped = 'B'
	}
	bad := ni[:i] + string(flipped) + ni[i+1:]
	put(narinfoKey(t, cl.Top), []byte(bad), "text/x-nix-narinfo")

	want := []string{
		cl.Extra[0] + " nar-missing",
		cl.Extra[1] + " nar-size",
		cl.Mid + " reference",
		cl.Top + " signature",
	}
	slices.Sort(want)
	for _, full := range []bool{false, true} {
		args := []string{}
		if full {
			args = append(args, "--full")
		}
		r := c.verify(t, args...)
		if r.code != 1 {
			t.Errorf("verify %s on a damaged cache: want exit status 1, got %v", strings.Join(args, " "), r)
		}
		if got := lcProblems(t, r.stdout); !slices.Equal(got, want) {
			t.Errorf("verify %s reported\n%q\nwant\n%q\n%v", strings.Join(args, " "), got, want, r)
		}
		if !strings.Contains(r.stderr, "4 problems") {
			t.Errorf("verify %s: summary does not count 4 problems: %v", strings.Join(args, " "), r)
		}
	}
	// The line for the missing reference names it.
	r := c.verify(t)
	if !strings.Contains(r.stdout, cl.Mid+": reference: its reference "+cl.Leaf) {
		t.Errorf("the reference problem does not name %s:\n%s", cl.Leaf, r.stdout)
	}
	// Real Nix agrees that the cache is broken.
	if out, err := testenv.Substitute(t, c.HTTPURL, []string{c.public}, cl.Top); err == nil {
		t.Errorf("Nix substituted from the damaged cache:\n%s", out)
	}

	r = lcRun(t, c.writer(), "verify", "--to", c.S3URL, "--trusted-public-keys", c.public,
		"--repair", "--secret-key-file", c.secret)
	t.Logf("verify --repair: %v", r)
	if r.code != 0 {
		t.Fatalf("verify --repair: %v", r)
	}
	if got := lcProblems(t, r.stdout); !slices.Equal(got, want) {
		t.Errorf("verify --repair reported\n%q\nwant\n%q", got, want)
	}
	// The two extras' NARs come back under their narinfos' URLs (the
	// narinfos stay); top and leaf are uploaded again.
	if mm := regexp.MustCompile(`repaired: (\d+) paths? uploaded again .*, (\d+) NAR files? restored`).FindStringSubmatch(r.stderr); mm == nil {
		t.Errorf("verify --repair does not say what it uploaded: %v", r)
	} else if n, _ := strconv.Atoi(mm[1]); n < 2 {
		t.Errorf("verify --repair uploaded %d paths, want at least 2 (top, leaf): %v", n, r)
	} else if n, _ := strconv.Atoi(mm[2]); n != 2 {
		t.Errorf("verify --repair restored %d NAR files, want 2 (the extras): %v", n, r)
	}
	c.assertClean(t, "after verify --repair")
	if got := c.narinfos(t); !maps.Equal(got, lcHashes(t, cl.All...)) {
		t.Errorf("after repair the cache has %v, want the closure", lcKeys(got))
	}
	if out, err := testenv.Substitute(t, c.HTTPURL, []string{c.public}, cl.Top); err != nil {
		t.Errorf("Nix cannot substitute after repair: %v\n%s", err, out)
	}
	if err := testenv.VerifyCache(t, c.HTTPURL, []string{c.public}, cl.All...); err != nil {
		t.Errorf("nix store verify after repair: %v", err)
	}
}

// gc killed with -9 in the middle of its sweep leaves a valid cache (every
// narinfo's NAR and references present), and once its lock is stale the
// next gc finishes the job.
func TestGCKill9LeavesValidCache(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := lcNewCache(t, m)
	const depth, width = 100, 5
	stale := []string{"NIXPUSHD_LOCK_STALE=3s"}

	paths := lcEval(t, lcDAGExpr, "--arg", "depth", strconv.Itoa(depth), "--arg", "width", strconv.Itoa(width))
	if len(paths) != 1+depth*width {
		t.Fatalf("the DAG has %d paths, want %d", len(paths), 1+depth*width)
	}
	node := func(i, j int) string { return paths[1+i*width+j] }
	top := paths[0]
	// The narinfo whose disappearance says gc is about half way.
	watch := narinfoKey(t, node(depth/2, 0))
	root := m.RootClient(t)
	exists := func(key string) bool {
		_, err := root.StatObject(t.Context(), c.Bucket, key, minio.StatObjectOptions{})
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
			t.Fatalf("stat %s: %v", key, err)
		}
		return err == nil
	}

	var killedAt time.Time
	for attempt := 1; ; attempt++ {
		began := time.Now()
		c.push(t, []string{"--compression", "zstd"}, top)
		t.Logf("pushed %d paths in %v", len(paths), time.Since(began))
		if got := len(c.narinfos(t)); got != len(paths) {
			t.Fatalf("after push: %d narinfos, want %d", got, len(paths))
		}
		time.Sleep(1500 * time.Millisecond) // everything older than --keep 1s

		cmd := lcCmd(append(c.gcEnv(), stale...), "gc", "--to", c.S3URL, "--keep", "1s", "--grace", "0s")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() }) // if a Fatal below leaves it running
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		exited := false
		for !exited && exists(watch) {
			select {
			case err := <-done:
				exited = true
				t.Logf("attempt %d: gc exited (%v) before the kill:\n%s", attempt, err, out.String())
			case <-time.After(2 * time.Millisecond):
			}
		}
		if !exited {
			cmd.Process.Kill()
			killedAt = time.Now()
			<-done
		}
		left := len(c.narinfos(t))
		t.Logf("attempt %d: %d of %d narinfos left", attempt, left, len(paths))
		if !exited && left > 0 && left < len(paths) {
			break
		}
		if attempt == 3 {
			t.Fatalf("could not kill gc part way in %d attempts (last: %d of %d narinfos left)", attempt, left, len(paths))
		}
		if exited {
			// Its lock is released; push everything again and retry.
			continue
		}
		time.Sleep(3500 * time.Millisecond) // the killed gc's lock goes stale
	}

	// The key assertion: the half-swept cache is valid.
	r := c.verify(t)
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no problems") {
		t.Errorf("verify after gc was killed: want no problems, got %v", r)
	}
	n := assertBucketConsistent(t, c.Cache)
	hasExclusive := false
	for k := range c.Objects(t) {
		hasExclusive = hasExclusive || strings.HasPrefix(k, "locks/exclusive-")
	}
	if !hasExclusive {
		t.Error("the killed gc left no exclusive lock behind")
	}
	if out, err := testenv.Substitute(t, c.HTTPURL, []string{c.public}, node(2, 0)); err != nil {
		t.Errorf("Nix cannot substitute a surviving path after the kill: %v\n%s", err, out)
	}

	// While its lock is live, another gc refuses to start.
	r = c.gc(t, stale, "--keep", "1s", "--grace", "0s")
	if since := time.Since(killedAt); since < 2*time.Second {
		if r.code == 0 || !strings.Contains(r.stderr, "another gc holds the cache") {
			t.Errorf("gc %v after the kill, while the dead gc's lock is live: want refusal, got %v", since, r)
		}
		if got := len(c.narinfos(t)); got != n {
			t.Errorf("the refused gc changed the narinfo count: %d -> %d", n, got)
		}
	} else {
		t.Logf("the second gc started %v after the kill: too late to expect the lock to be live", since)
	}

	// Once stale, gc takes over and finishes. On a loaded machine the gc
	// above may already have found the lock stale and taken over: then
	// its summary is the one to check.
	if r.code != 0 || lcParseSummary(t, r).DeletedNarInfos == 0 {
		time.Sleep(time.Until(killedAt.Add(3500 * time.Millisecond)))
		r = c.gc(t, stale, "--keep", "1s", "--grace", "0s")
	}
	if r.code != 0 {
		t.Fatalf("gc after the lock went stale: %v", r)
	}
	if s := lcParseSummary(t, r); s.NarInfos != n || s.Roots != 0 || s.Kept != 0 || s.DeletedNarInfos != n || s.DeletedNARs != len(paths) {
		t.Errorf("gc after the kill: summary %+v, want the %d narinfos left and all %d NARs deleted", s, n, len(paths))
	}
	if got := lcLeft(t, c.Objects(t)); !slices.Equal(got, []string{"nix-cache-info"}) {
		t.Errorf("after the second gc the bucket holds %d objects, want only nix-cache-info: %.400q", len(got), got)
	}
	c.assertClean(t, "after the second gc")
}

package lifecycle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/nar"
)

// recorder is a file:// cache that records delete batches.
type recorder struct {
	*file.Dir
	batches [][]string
}

func (r *recorder) Delete(ctx context.Context, keys []string) error {
	r.batches = append(r.batches, slices.Clone(keys))
	return r.Dir.Delete(ctx, keys)
}

type fakePath struct {
	name string
	refs []string
	age  time.Duration
	// deriver, if set, names the .drv (a fakePath name) in Deriver.
	deriver string
}

func storePath(name string) string {
	sum := sha256.Sum256([]byte(name))
	return nar.StoreDir + "/" + nar.NixBase32.EncodeToString(sum[:20]) + "-" + name
}

func hashOf(name string) string {
	sp, _ := nar.ParseStorePath(storePath(name))
	return sp.Hash
}

// fill writes a narinfo and a NAR per path, aged as asked.
func fill(t *testing.T, dir string, paths []fakePath) {
	t.Helper()
	f, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.Put(ctx, "nix-cache-info", strings.NewReader(cache.CacheInfo), int64(len(cache.CacheInfo)), "")
	for _, p := range paths {
		body := []byte("nar of " + p.name)
		sum := sha256.Sum256(body)
		narKey := "nar/" + nar.NixBase32.EncodeToString(sum[:]) + ".nar"
		ni := &nar.NarInfo{StorePath: storePath(p.name), URL: narKey, Compression: "none",
			NarHash: nar.NewSHA256(sum[:]), NarSize: int64(len(body)), FileHash: nar.NewSHA256(sum[:]), FileSize: int64(len(body))}
		for _, r := range p.refs {
			ni.References = append(ni.References, strings.TrimPrefix(storePath(r), nar.StoreDir+"/"))
		}
		if p.deriver != "" {
			ni.Deriver = strings.TrimPrefix(storePath(p.deriver), nar.StoreDir+"/")
		}
		text, err := ni.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		niKey := hashOf(p.name) + ".narinfo"
		for key, b := range map[string][]byte{narKey: body, niKey: text} {
			if err := f.Put(ctx, key, bytes.NewReader(b), int64(len(b)), ""); err != nil {
				t.Fatal(err)
			}
			when := time.Now().Add(-p.age)
			os.Chtimes(filepath.Join(dir, key), when, when)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// gc keeps the closure of recent narinfos and pins, deletes the rest
// referrers first, and never a NAR younger than the grace period.
func TestGCKeepsClosuresAndOrdersDeletes(t *testing.T) {
	dir := t.TempDir()
	old := 48 * time.Hour
	fill(t, dir, []fakePath{
		{name: "shared", age: old},
		{name: "libold", age: old},
		{name: "app-new", refs: []string{"shared"}, age: time.Minute},   // root by age
		{name: "app-old", refs: []string{"shared", "libold"}, age: old}, // doomed
		{name: "tool", refs: []string{"tooldep"}, age: old},             // pinned below
		{name: "tooldep", age: old},
		{name: "chain3", refs: []string{"chain2"}, age: old},
		{name: "chain2", refs: []string{"chain1"}, age: old},
		{name: "chain1", age: old},
	})
	f, _ := file.New(dir)
	ctx := context.Background()
	pin := FormatPin([]string{storePath("tool")})
	f.Put(ctx, PinPrefix+"tools", bytes.NewReader(pin), int64(len(pin)), "")
	// An orphan NAR just uploaded (its narinfo not written yet).
	f.Put(ctx, "nar/fresh.nar", strings.NewReader("x"), 1, "")

	r := &recorder{Dir: f}
	locker := mustLocker(t, r)
	res, err := GC(ctx, r, GCOptions{Keep: 24 * time.Hour, Grace: time.Hour, Locker: locker, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range []string{"shared", "app-new", "tool", "tooldep"} {
		if _, err := os.Stat(filepath.Join(dir, hashOf(keep)+".narinfo")); err != nil {
			t.Errorf("%s was deleted: %v", keep, err)
		}
	}
	for _, gone := range []string{"libold", "app-old", "chain1", "chain2", "chain3"} {
		if _, err := os.Stat(filepath.Join(dir, hashOf(gone)+".narinfo")); err == nil {
			t.Errorf("%s was kept", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nar/fresh.nar")); err != nil {
		t.Error("a NAR younger than the grace period was deleted")
	}
	if res.Kept != 4 || res.DeletedNarInfos != 5 || res.DeletedNARs != 5 || res.Roots != 2 {
		t.Errorf("result %+v", res)
	}
	// Referrers before references: chain3, then chain2, then chain1;
	// app-old before libold.
	pos := map[string]int{}
	for i, b := range r.batches {
		for _, k := range b {
			pos[k] = i
		}
	}
	before := func(a, b string) {
		if pos[hashOf(a)+".narinfo"] >= pos[hashOf(b)+".narinfo"] {
			t.Errorf("%s deleted in batch %d, not before %s (batch %d)", a, pos[hashOf(a)+".narinfo"], b, pos[hashOf(b)+".narinfo"])
		}
	}
	before("chain3", "chain2")
	before("chain2", "chain1")
	before("app-old", "libold")
	// Every narinfo went before any NAR.
	lastNarInfo, firstNAR := -1, len(r.batches)
	for i, b := range r.batches {
		for _, k := range b {
			if strings.HasSuffix(k, ".narinfo") {
				lastNarInfo = max(lastNarInfo, i)
			}
			if strings.HasPrefix(k, "nar/") {
				firstNAR = min(firstNAR, i)
			}
		}
	}
	if lastNarInfo >= firstNAR {
		t.Errorf("a NAR was deleted before the last narinfo: %v", r.batches)
	}
	// What is left is a valid cache.
	vres, err := Verify(ctx, f, VerifyOptions{}, func(p Problem) { t.Errorf("verify after gc: %s", p) })
	if err != nil || vres.Problems != 0 {
		t.Errorf("verify: %v %+v", err, vres)
	}
}

// --dry-run deletes nothing and takes no lock.
func TestGCDryRun(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "a", age: 48 * time.Hour}, {name: "b", refs: []string{"a"}, age: 48 * time.Hour}})
	f, _ := file.New(dir)
	var reported []string
	res, err := GC(context.Background(), f, GCOptions{Keep: time.Hour, DryRun: true, Log: quietLog(),
		Report: func(k string, _ int64) { reported = append(reported, k) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(reported) != 4 || res.DeletedNarInfos != 2 {
		t.Errorf("reported %v, result %+v", reported, res)
	}
	if _, err := os.Stat(filepath.Join(dir, hashOf("a")+".narinfo")); err != nil {
		t.Error("dry run deleted a narinfo")
	}
	if _, err := os.Stat(filepath.Join(dir, "locks")); err == nil {
		t.Error("dry run took a lock")
	}
}

// verify names each kind of damage.
func TestVerifyFindsDamage(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{
		{name: "dep"}, {name: "app", refs: []string{"dep"}},
		{name: "nonar"}, {name: "short"},
	})
	f, _ := file.New(dir)
	ctx := context.Background()
	os.Remove(filepath.Join(dir, hashOf("dep")+".narinfo"))
	read := func(name string) *nar.NarInfo {
		b, _ := os.ReadFile(filepath.Join(dir, hashOf(name)+".narinfo"))
		ni, err := nar.ParseNarInfo(b)
		if err != nil {
			t.Fatal(err)
		}
		return ni
	}
	os.Remove(filepath.Join(dir, read("nonar").URL))
	os.WriteFile(filepath.Join(dir, read("short").URL), []byte("nar"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad0000000000000000000000000000.narinfo"), []byte("garbage"), 0o644)

	got := map[string]string{}
	res, err := Verify(ctx, f, VerifyOptions{Full: true}, func(p Problem) { got[p.Kind] = p.String() })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		ProblemReference: storePath("app"),
		ProblemNARGone:   storePath("nonar"),
		ProblemNARSize:   storePath("short"),
	}
	for kind, path := range want {
		if !strings.HasPrefix(got[kind], path+": "+kind) {
			t.Errorf("%s: got %q, want a line about %s", kind, got[kind], path)
		}
	}
	if res.Problems != 3 {
		t.Errorf("%d problems, want 3: %v", res.Problems, got)
	}
	_ = res.String()
}

// failingGet makes reading one narinfo fail the way a denied or flaky
// request does.
type failingGet struct {
	*recorder
	key string
}

func (f *failingGet) Get(ctx context.Context, key string) ([]byte, error) {
	if key == f.key {
		return nil, &cache.PermanentError{Err: errors.New("Access Denied"), Config: true}
	}
	return f.recorder.Get(ctx, key)
}

// A narinfo that cannot be read stops gc before it deletes anything: its
// references and NAR are unknown, so deleting could break its closure.
func TestGCStopsOnUnreadableNarInfo(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{
		{name: "dep", age: 48 * time.Hour},
		{name: "app", refs: []string{"dep"}, age: time.Minute},
		{name: "old", age: 48 * time.Hour},
	})
	f, _ := file.New(dir)
	r := &failingGet{recorder: &recorder{Dir: f}, key: hashOf("app") + ".narinfo"}
	_, err := GC(context.Background(), r, GCOptions{Keep: time.Hour, Locker: mustLocker(t, r), Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Fatalf("gc: %v, want it to stop", err)
	}
	for _, b := range r.batches {
		for _, k := range b {
			if !strings.HasPrefix(k, cachelock.Prefix) {
				t.Errorf("deleted %s although a narinfo could not be read", k)
			}
		}
	}
}

// A narinfo that does not parse is kept, and no NAR is deleted that run.
func TestGCKeepsUnparsable(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "old", age: 48 * time.Hour}})
	bad := hashOf("broken") + ".narinfo"
	os.WriteFile(filepath.Join(dir, bad), []byte("StorePath: nonsense\n"), 0o644)
	f, _ := file.New(dir)
	res, err := GC(context.Background(), f, GCOptions{Keep: time.Hour, Locker: mustLocker(t, f), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, bad)); err != nil {
		t.Error("gc deleted a narinfo it could not parse")
	}
	if res.DeletedNARs != 0 || res.DeletedNarInfos != 1 {
		t.Errorf("%+v: want old's narinfo deleted and no NAR", res)
	}
}

func mustLocker(t *testing.T, c cache.Target) *cachelock.Locker {
	t.Helper()
	l, err := cachelock.New(c, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A dry-run plan lists exactly what Execute then deletes, in the same
// order, and the plan's figures are the sweep's.
func TestGCPlanIsWhatExecuteDeletes(t *testing.T) {
	dir := t.TempDir()
	old := 48 * time.Hour
	fill(t, dir, []fakePath{
		{name: "shared", age: old},
		{name: "libold", age: old},
		{name: "app-new", refs: []string{"shared"}, age: time.Minute},
		{name: "app-old", refs: []string{"shared", "libold"}, age: old},
		{name: "tool", refs: []string{"tooldep"}, age: old},
		{name: "tooldep", age: old},
		{name: "chain3", refs: []string{"chain2"}, age: old},
		{name: "chain2", refs: []string{"chain1"}, age: old},
		{name: "chain1", age: old},
	})
	f, _ := file.New(dir)
	ctx := context.Background()
	pin := FormatPin([]string{storePath("tool")})
	f.Put(ctx, PinPrefix+"tools", bytes.NewReader(pin), int64(len(pin)), "")
	f.Put(ctx, PinPrefix+"removed", strings.NewReader(""), 0, "")
	f.Put(ctx, hashOf("chain2")+".ls", strings.NewReader("{}"), 2, "")    // goes with its narinfo
	f.Put(ctx, hashOf("nothing")+".ls", strings.NewReader("{}"), 2, "")   // no narinfo: other
	f.Put(ctx, "nar/orphan.nar", strings.NewReader("old orphan"), 10, "") // past grace
	f.Put(ctx, "nar/fresh.nar", strings.NewReader("x"), 1, "")            // within grace
	// An orphan listing is deleted once past grace, as a NAR is: a pusher
	// writes it before its narinfo.
	for _, k := range []string{PinPrefix + "removed", "nar/orphan.nar", hashOf("nothing") + ".ls"} {
		when := time.Now().Add(-old)
		os.Chtimes(filepath.Join(dir, k), when, when)
	}
	opts := GCOptions{Keep: 24 * time.Hour, Grace: time.Hour, Log: quietLog()}

	dryOpts := opts
	dryOpts.DryRun = true
	dry, err := PlanGC(ctx, f, dryOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := dry.Deletions()
	if _, err := dry.Execute(ctx); err == nil {
		t.Error("a dry-run plan was executed")
	}
	if _, err := os.Stat(filepath.Join(dir, cachelock.Prefix)); err == nil {
		t.Error("a dry-run plan took a lock")
	}
	var wantKeys []string
	for _, d := range want {
		wantKeys = append(wantKeys, d.Key)
	}
	for _, k := range []string{hashOf("chain2") + ".ls", hashOf("nothing") + ".ls", PinPrefix + "removed", "nar/orphan.nar", hashOf("chain1") + ".narinfo"} {
		if !slices.Contains(wantKeys, k) {
			t.Errorf("the plan does not delete %s: %v", k, wantKeys)
		}
	}
	for _, k := range wantKeys {
		if _, err := os.Stat(filepath.Join(dir, k)); err != nil {
			t.Errorf("the dry run deleted %s", k)
		}
	}

	r := &recorder{Dir: f}
	opts.Locker = mustLocker(t, r)
	plan, err := PlanGC(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Deletions(); !slices.Equal(got, want) {
		t.Errorf("the plan under the lock differs from the dry run:\n%v\n%v", got, want)
	}
	// The plan holds the exclusive lock: no other gc can plan meanwhile.
	if p2, err := PlanGC(ctx, f, GCOptions{Keep: time.Hour, Locker: mustLocker(t, f), Log: quietLog()}); err == nil {
		p2.Release(ctx)
		t.Error("a second gc planned while the first plan held the lock")
	}
	r.batches = nil
	res, err := plan.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, b := range r.batches {
		for _, k := range b {
			if !strings.HasPrefix(k, cachelock.Prefix) { // our lock's release
				deleted = append(deleted, k)
			}
		}
	}
	if !slices.Equal(deleted, wantKeys) {
		t.Errorf("execute deleted\n%v\nthe dry-run plan said\n%v", deleted, wantKeys)
	}
	for _, k := range wantKeys {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			t.Errorf("%s is still there", k)
		}
	}
	dres := dry.Result()
	dres.Requests, dres.Duration, res.Requests, res.Duration = 0, 0, 0, 0
	if *dres != *res {
		t.Errorf("dry run %+v, execute %+v", dres, res)
	}
	if _, err := plan.Execute(ctx); err == nil {
		t.Error("a plan was executed twice")
	}
	// Execute released the lock: gc can run again.
	if _, err := GC(ctx, f, GCOptions{Keep: time.Hour, Locker: mustLocker(t, f), Log: quietLog()}); err != nil {
		t.Errorf("gc after execute: %v", err)
	}
}

// putFailer fails every Put once fail is set: lock refreshes fail.
type putFailer struct {
	*recorder
	fail atomic.Bool
}

func (p *putFailer) Put(ctx context.Context, key string, body io.Reader, size int64, ct string) error {
	if p.fail.Load() {
		return errors.New("injected")
	}
	return p.recorder.Put(ctx, key, body, size, ct)
}

// A plan whose lock lapsed (not refreshed in time) deletes nothing, and
// Release gives up a plan without deleting and frees the lock.
func TestGCPlanLockLost(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "a", age: 48 * time.Hour}, {name: "b", refs: []string{"a"}, age: 48 * time.Hour}})
	f, _ := file.New(dir)
	ctx := context.Background()
	pf := &putFailer{recorder: &recorder{Dir: f}}
	locker, err := cachelock.New(pf, 400*time.Millisecond, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanGC(ctx, pf, GCOptions{Keep: time.Hour, Locker: locker, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Deletions()) != 4 {
		t.Fatalf("plan %v", plan.Deletions())
	}
	pf.fail.Store(true)
	time.Sleep(300 * time.Millisecond) // past StaleAfter/2 without a refresh
	pf.batches = nil
	_, err = plan.Execute(ctx)
	if err == nil || !strings.Contains(err.Error(), "could not be refreshed in time") {
		t.Fatalf("execute with a lapsed lock: %v", err)
	}
	for _, b := range pf.batches {
		for _, k := range b {
			if !strings.HasPrefix(k, cachelock.Prefix) {
				t.Errorf("deleted %s under a lapsed lock", k)
			}
		}
	}
	pf.fail.Store(false)

	plan, err = PlanGC(ctx, f, GCOptions{Keep: time.Hour, Locker: mustLocker(t, f), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	plan.Release(ctx)
	plan.Release(ctx)
	if _, err := plan.Execute(ctx); err == nil {
		t.Error("a released plan was executed")
	}
	if _, err := os.Stat(filepath.Join(dir, hashOf("a")+".narinfo")); err != nil {
		t.Error("a released plan deleted")
	}
	if _, err := GC(ctx, f, GCOptions{Keep: time.Hour, Locker: mustLocker(t, f), Log: quietLog()}); err != nil {
		t.Errorf("gc after release: %v", err)
	}
}

package upload

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

func fakeNAR(path string) []byte { return []byte("nar of " + path) }

func fakeDump(corrupt map[string]bool) func(io.Writer, string) error {
	return func(w io.Writer, path string) error {
		b := fakeNAR(path)
		if corrupt[path] {
			b = append(b, '!')
		}
		_, err := w.Write(b)
		return err
	}
}

func info(name string, refs ...*store.PathInfo) *store.PathInfo {
	// A valid store path: 32 nix32 characters derived from the name.
	sum := sha256.Sum256([]byte(name))
	h := nar.NixBase32.EncodeToString(sum[:20])
	p := &store.PathInfo{Path: nar.StoreDir + "/" + h + "-" + name}
	d := sha256.Sum256(fakeNAR(p.Path))
	p.NarHash = nar.NewSHA256(d[:])
	p.NarSize = int64(len(fakeNAR(p.Path)))
	p.References = []string{}
	for _, r := range refs {
		p.References = append(p.References, r.Path)
	}
	return p
}

func testKey(t *testing.T) *nar.SecretKey {
	_, sk, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &nar.SecretKey{Name: "test-1", Key: sk}
}

func newTestPusher(t *testing.T, m *cachetest.Mem, corrupt map[string]bool) *Pusher {
	c, err := compression.New(compression.Options{Method: "xz", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &Pusher{
		Target: m, Compressor: c, Key: testKey(t), Jobs: 3, TempDir: t.TempDir(),
		Retry: retry.Policy{Attempts: 4, Delay: func(n int) time.Duration { return time.Duration(n) * time.Second }},
		dump:  fakeDump(corrupt),
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func narinfoKeyOf(t *testing.T, p string) string {
	k, err := narinfoKey(p)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Every narinfo is written after its own NAR and after the narinfos of all
// its references, whatever the worker interleaving.
func TestPushOrder(t *testing.T) {
	for round := range 20 {
		m := cachetest.NewMem()
		p := newTestPusher(t, m, nil)
		a := info("a")
		b := info("b", a)
		c := info("c", a, b)
		c.References = append(c.References, c.Path) // self-reference
		d := info("d", c)
		e := info("e")
		closure := []*store.PathInfo{e, d, c, b, a}
		res, err := p.Push(context.Background(), closure)
		if err != nil || len(res.Failed) != 0 {
			t.Fatalf("round %d: %v %v", round, err, res.Failed)
		}
		if res.Uploaded != 5 || res.Present != 0 {
			t.Fatalf("result %+v", res)
		}
		if m.Index("nix-cache-info") != 0 {
			t.Errorf("nix-cache-info not written first: %v", m.Order)
		}
		pub := p.Key.Key.Public().(ed25519.PublicKey)
		for _, pi := range closure {
			key := narinfoKeyOf(t, pi.Path)
			ni, err := nar.ParseNarInfo(m.Objects[key])
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if m.Index(ni.URL) < 0 || m.Index(ni.URL) > m.Index(key) {
				t.Errorf("%s written before its NAR %s", key, ni.URL)
			}
			for _, r := range pi.References {
				if r != pi.Path && m.Index(narinfoKeyOf(t, r)) > m.Index(key) {
					t.Errorf("%s written before its reference %s", key, r)
				}
			}
			if ni.Verify([]*nar.PublicKey{{Name: "test-1", Key: pub}}) != 1 {
				t.Errorf("%s: signature does not verify", key)
			}
		}
	}
}

// A corrupt path fails with ErrCorrupt and uploads nothing; its dependents
// fail; unrelated paths still go up.
func TestPushCorrupt(t *testing.T) {
	m := cachetest.NewMem()
	a := info("a")
	b := info("b", a)
	e := info("e")
	p := newTestPusher(t, m, map[string]bool{a.Path: true})
	res, err := p.Push(context.Background(), []*store.PathInfo{a, b, e})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Failed[a.Path], ErrCorrupt) || !strings.Contains(res.Failed[a.Path].Error(), a.Path) {
		t.Errorf("a: %v", res.Failed[a.Path])
	}
	if res.Failed[b.Path] == nil || !strings.Contains(res.Failed[b.Path].Error(), "reference "+a.Path) {
		t.Errorf("b: %v", res.Failed[b.Path])
	}
	if res.Uploaded != 1 {
		t.Errorf("uploaded %d, want 1 (e)", res.Uploaded)
	}
	for key := range m.Objects {
		if strings.HasPrefix(key, "nar/") && len(m.Objects) > 0 {
			continue
		}
		if key == narinfoKeyOf(t, a.Path) || key == narinfoKeyOf(t, b.Path) {
			t.Errorf("narinfo %s written for a failed path", key)
		}
	}
	// Only e's NAR and b's NAR may be there; never a NAR with a's bad bytes.
	if got := len(m.Objects); got > 4 { // cache-info, e nar+narinfo, b nar
		t.Errorf("%d objects, want at most 4: %v", got, m.Order)
	}
}

// Already-cached paths cost one existence check each and no writes.
func TestPushNoop(t *testing.T) {
	m := cachetest.NewMem()
	a := info("a")
	b := info("b", a)
	p := newTestPusher(t, m, nil)
	if _, err := p.Push(context.Background(), []*store.PathInfo{a, b}); err != nil {
		t.Fatal(err)
	}
	writes := len(m.Order)
	p2 := newTestPusher(t, m, nil)
	m.Checks = map[string]int{}
	res, err := p2.Push(context.Background(), []*store.PathInfo{a, b})
	if err != nil || res.Present != 2 || res.Uploaded != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if len(m.Order) != writes {
		t.Errorf("no-op push wrote %v", m.Order[writes:])
	}
	for _, pi := range []*store.PathInfo{a, b} {
		if n := m.Checks[narinfoKeyOf(t, pi.Path)]; n != 1 {
			t.Errorf("%s checked %d times, want 1", pi.Path, n)
		}
	}
	// The same Pusher remembers: a third push checks nothing.
	m.Checks = map[string]int{}
	if _, err := p2.Push(context.Background(), []*store.PathInfo{a, b}); err != nil {
		t.Fatal(err)
	}
	if m.Checks[narinfoKeyOf(t, a.Path)] != 0 {
		t.Error("known-present path checked again")
	}
}

// Transient failures are retried after the backoff delay, without
// compressing again; permanent ones are not retried.
func TestPushRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := cachetest.NewMem()
		a := info("a")
		m.FailPut = func(key string, attempt int) error {
			if strings.HasPrefix(key, "nar/") && attempt <= 2 {
				return errors.New("connection reset by peer")
			}
			return nil
		}
		p := newTestPusher(t, m, nil)
		var dumps int
		inner := p.dump
		p.dump = func(w io.Writer, path string) error { dumps++; return inner(w, path) }
		start := time.Now()
		res, err := p.Push(context.Background(), []*store.PathInfo{a})
		if err != nil || res.Uploaded != 1 {
			t.Fatalf("%+v %v", res, err)
		}
		// Delays of 1s then 2s: virtual time says exactly 3s passed.
		if el := time.Since(start); el != 3*time.Second {
			t.Errorf("elapsed %v, want 3s of backoff", el)
		}
		if dumps != 1 {
			t.Errorf("serialised %d times, want 1 (retries reuse the compressed file)", dumps)
		}

		m2 := cachetest.NewMem()
		b := info("b")
		m2.FailPut = func(key string, attempt int) error {
			if strings.HasPrefix(key, "nar/") {
				return &cache.PermanentError{Err: errors.New("AccessDenied"), Config: true}
			}
			return nil
		}
		p2 := newTestPusher(t, m2, nil)
		start = time.Now()
		res, _ = p2.Push(context.Background(), []*store.PathInfo{b})
		if !cache.IsConfig(res.Failed[b.Path]) {
			t.Errorf("want a config error, got %v", res.Failed[b.Path])
		}
		if m2.Puts[narKeyIn(m2)] != 1 || time.Since(start) != 0 {
			t.Errorf("permanent error retried: %v puts, %v elapsed", m2.Puts, time.Since(start))
		}
	})
}

func narKeyIn(m *cachetest.Mem) string {
	for k := range m.Puts {
		if strings.HasPrefix(k, "nar/") {
			return k
		}
	}
	return ""
}

// A cancelled context is never retried.
func TestRetryCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := retry.Policy{Attempts: 5}.Do(ctx, func() error { calls++; return context.Canceled })
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Errorf("calls %d err %v", calls, err)
	}
}

// Concurrent Push calls that share a dependency upload it once, and each
// still writes its narinfo only after the shared one.
func TestConcurrentPushesShare(t *testing.T) {
	m := cachetest.NewMem()
	p := newTestPusher(t, m, nil)
	shared := info("shared")
	var tops []*store.PathInfo
	for i := range 8 {
		tops = append(tops, info(fmt.Sprintf("top%d", i), shared))
	}
	var wg sync.WaitGroup
	for _, top := range tops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Push(context.Background(), []*store.PathInfo{shared, top})
			if err != nil || len(res.Failed) > 0 {
				t.Errorf("%v %v", err, res.Failed)
			}
		}()
	}
	wg.Wait()
	sk := narinfoKeyOf(t, shared.Path)
	if m.Puts[sk] != 1 {
		t.Errorf("shared narinfo put %d times, want 1", m.Puts[sk])
	}
	for _, top := range tops {
		if k := narinfoKeyOf(t, top.Path); m.Index(k) < m.Index(sk) {
			t.Errorf("%s written before its reference", k)
		}
	}
}

// barrierTarget is a cachetest.Mem with a group-commit Barrier (as a file://
// cache has) that blocks until released.
type barrierTarget struct {
	*cachetest.Mem
	release  chan struct{}
	calls    int
	inflight int
	most     int
}

func (b *barrierTarget) Barrier(ctx context.Context) error {
	b.Mu.Lock()
	b.calls++
	b.inflight++
	b.most = max(b.most, b.inflight)
	b.Mu.Unlock()
	defer func() { b.Mu.Lock(); b.inflight--; b.Mu.Unlock() }()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// While one publisher waits on the disk's sync, the other workers keep
// uploading NARs, and the paths that become ready wait for the next batch
// instead of each starting a publisher (and a sync) of its own.
func TestPushOnePublisherWaitsOnSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &barrierTarget{Mem: cachetest.NewMem(), release: make(chan struct{})}
		p := newTestPusher(t, b.Mem, nil)
		p.Target, p.Jobs = b, 2
		var closure []*store.PathInfo
		for i := range 50 {
			closure = append(closure, info(fmt.Sprintf("leaf-%d", i)))
		}
		done := make(chan error, 1)
		var res *Result
		go func() {
			var err error
			res, err = p.Push(context.Background(), closure)
			done <- err
		}()
		synctest.Wait() // everything not waiting on the sync is idle
		b.Mu.Lock()
		var nars, narinfos int
		for k := range b.Objects {
			switch {
			case strings.HasPrefix(k, "nar/"):
				nars++
			case strings.HasSuffix(k, ".narinfo"):
				narinfos++
			}
		}
		calls, most := b.calls, b.most
		b.Mu.Unlock()
		if calls != 1 || most != 1 {
			t.Errorf("while one publisher waits on the sync: %d Barrier calls (%d at once), want 1", calls, most)
		}
		if nars != 50 || narinfos != 0 {
			t.Errorf("while the first sync waits: %d NARs and %d narinfos uploaded, want all 50 NARs and no narinfo", nars, narinfos)
		}
		close(b.release)
		if err := <-done; err != nil || res.Uploaded != 50 {
			t.Fatalf("push: %v, %+v", err, res)
		}
		if b.calls != 2 || b.most != 1 {
			t.Errorf("%d Barrier calls (%d at once), want 2: the first path, then the 49 that gathered", b.calls, b.most)
		}
	})
}

// PushForce without a Key never replaces a signed narinfo by an unsigned
// one: the path fails with ErrWeaker and its narinfo stays; with a Key it
// is rewritten and signed.
func TestPushForceNeverWeakens(t *testing.T) {
	m := cachetest.NewMem()
	a := info("a")
	b := info("b", a)
	signed := newTestPusher(t, m, nil)
	if res, err := signed.Push(context.Background(), []*store.PathInfo{a, b}); err != nil || len(res.Failed) > 0 {
		t.Fatalf("%+v %v", res, err)
	}
	keyB := narinfoKeyOf(t, b.Path)
	before := string(m.Objects[keyB])

	unsigned := newTestPusher(t, m, nil)
	unsigned.Key = nil
	res, err := unsigned.PushForce(context.Background(), []*store.PathInfo{a, b}, []string{b.Path})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Failed[b.Path], ErrWeaker) || !strings.Contains(res.Failed[b.Path].Error(), "signed by test-1") {
		t.Errorf("b: want ErrWeaker naming the key, got %v", res.Failed[b.Path])
	}
	if res.Uploaded != 0 || res.Present != 1 {
		t.Errorf("result %+v, want nothing uploaded, a present", res)
	}
	if got := string(m.Objects[keyB]); got != before {
		t.Errorf("b's narinfo changed:\n%s\nwas\n%s", got, before)
	}

	// Its own signatures (from the local store) are not fewer: allowed.
	ni, _ := nar.ParseNarInfo(m.Objects[keyB])
	b2 := *b
	b2.Sigs = ni.Sigs
	res, err = unsigned.PushForce(context.Background(), []*store.PathInfo{a, &b2}, []string{b.Path})
	if err != nil || len(res.Failed) > 0 || res.Uploaded != 1 {
		t.Errorf("forced push carrying the same signatures: %+v %v", res, err)
	}

	// With a key, a rewrite is signed by it.
	again := newTestPusher(t, m, nil)
	res, err = again.PushForce(context.Background(), []*store.PathInfo{a, b}, []string{b.Path})
	if err != nil || len(res.Failed) > 0 || res.Uploaded != 1 {
		t.Fatalf("forced push with a key: %+v %v", res, err)
	}
	ni, _ = nar.ParseNarInfo(m.Objects[keyB])
	pub := again.Key.Key.Public().(ed25519.PublicKey)
	if ni.Verify([]*nar.PublicKey{{Name: "test-1", Key: pub}}) != 1 {
		t.Errorf("rewritten narinfo not signed by the key:\n%s", m.Objects[keyB])
	}
}

// An unsigned push whose narinfo was written, signed, since it was found
// missing leaves the signed one in place.
func TestUnsignedPushKeepsSignedNarInfo(t *testing.T) {
	m := cachetest.NewMem()
	a := info("a")
	signed := newTestPusher(t, m, nil)
	if res, err := signed.Push(context.Background(), []*store.PathInfo{a}); err != nil || len(res.Failed) > 0 {
		t.Fatalf("%+v %v", res, err)
	}
	key := narinfoKeyOf(t, a.Path)
	before := string(m.Objects[key])
	unsigned := newTestPusher(t, m, nil)
	unsigned.Key = nil
	// As if Missing had answered before the signed write.
	unsigned.init()
	info, _, _, err := unsigned.uploadNAR(context.Background(), a, false, &sidecarCounts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unsigned.writeNarInfo(context.Background(), a, info); err != nil {
		t.Fatal(err)
	}
	if got := string(m.Objects[key]); got != before {
		t.Errorf("unsigned write replaced the signed narinfo:\n%s", got)
	}
}

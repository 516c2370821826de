package upload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/store"
)

// A later Pusher with the same memo directory takes a listing's ETag for
// the narinfos an earlier one wrote or found signed: a no-op re-push
// reads none of them, where one without the memo reads each; a narinfo
// rewritten since (another ETag) is read, and signed again.
func TestSignMemoAcrossPushers(t *testing.T) {
	m := cachetest.NewMem()
	dep := info("dep")
	top := info("top", dep)
	closure := []*store.PathInfo{dep, top}
	for i := range primeMin + 20 { // enough for push to list the cache
		closure = append(closure, info(fmt.Sprintf("other-%d", i)))
	}
	n := len(closure)
	dir := t.TempDir()
	key := testKey(t)
	pusher := func(memo string) *Pusher {
		p := newTestPusher(t, m, nil)
		p.Key, p.SignPresent, p.SignedMemoDir = key, true, memo
		return p
	}
	reads := func() map[string]int {
		m.Mu.Lock()
		defer m.Mu.Unlock()
		out := map[string]int{}
		for _, pi := range closure {
			k := narinfoKeyOf(t, pi.Path)
			out[k] = m.Gets[k]
		}
		return out
	}
	readsSince := func(before map[string]int) (n int) {
		for k, v := range reads() {
			n += v - before[k]
		}
		return n
	}
	push := func(p *Pusher) *Result {
		t.Helper()
		res, err := p.Push(context.Background(), closure)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	push(pusher(dir))

	before := reads()
	if res := push(pusher("")); res.Present != n || readsSince(before) != n {
		t.Fatalf("without the memo: %+v, %d narinfos read; want all %d present and read", res, readsSince(before), n)
	}
	before = reads()
	if res := push(pusher(dir)); res.Present != n || readsSince(before) != 0 {
		t.Fatalf("with the memo: %+v, %d narinfos read; want all %d present, none read", res, readsSince(before), n)
	}

	// Another machine rewrites top's narinfo with its own signature only.
	topKey := narinfoKeyOf(t, top.Path)
	foreign := testKey(t)
	foreign.Name = "elsewhere-1"
	ni := mustNarInfo(t, m.Objects[topKey])
	ni.Sigs = nil
	ni.Sign(foreign)
	m.Mu.Lock()
	m.Objects[topKey], _ = ni.MarshalText()
	m.Mu.Unlock()
	before = reads()
	if res := push(pusher(dir)); res.Signed != 1 || res.SignedPaths[0] != top.Path {
		t.Fatalf("after the rewrite: %+v; want top signed again", res)
	}
	if r := reads(); r[topKey] == before[topKey] || readsSince(before) != r[topKey]-before[topKey] {
		t.Errorf("after the rewrite, read %v (before %v): want top's narinfo read, and only it", r, before)
	}
	before = reads()
	if res := push(pusher(dir)); res.Present != n || readsSince(before) != 0 {
		t.Fatalf("after re-signing: %+v, %d read; want the memo to know the new text", res, readsSince(before))
	}
}

// The memo file is a shortcut: one of another key, or with garbled lines,
// only means more reads, never a narinfo taken for signed.
func TestSignMemoFile(t *testing.T) {
	dir := t.TempDir()
	m := newSignMemo(dir, "s3://b", "k-1:AAAA")
	m.add("abc.narinfo", []byte("text"))
	if err := m.flush(); err != nil {
		t.Fatal(err)
	}
	sum := sumOf([]byte("text"))
	if again := newSignMemo(dir, "s3://b", "k-1:AAAA"); !again.signed("abc.narinfo", sum) || again.signed("abc.narinfo", sumOf([]byte("other"))) || again.signed("abc.narinfo", "") {
		t.Error("a memo read back does not answer as the one written")
	}
	if newSignMemo(dir, "s3://b", "k-1:BBBB").signed("abc.narinfo", sum) || newSignMemo(dir, "s3://other", "k-1:AAAA").signed("abc.narinfo", sum) {
		t.Error("another key's or cache's memo answers for this one")
	}
	// Garbled lines (a torn append) are skipped; the rest still count.
	f, err := os.OpenFile(m.file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("def.narinfo 12\nnot a line\nghi.narinfo " + sum + "\nxyz.narinfo " + strings.Repeat("0", 31))
	f.Close()
	again := newSignMemo(dir, "s3://b", "k-1:AAAA")
	if !again.signed("abc.narinfo", sum) || !again.signed("ghi.narinfo", sum) || again.signed("def.narinfo", "12") {
		t.Error("garbled lines changed what the memo answers")
	}
	// Many stale lines are compacted away.
	for i := range 3000 {
		again.add("abc.narinfo", []byte{byte(i), byte(i >> 8)})
		if i%100 == 0 {
			if err := again.flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := again.flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.Base(m.file)))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 1500 {
		t.Errorf("memo file of %d lines for 3 keys: not compacted", n)
	}
	if last := newSignMemo(dir, "s3://b", "k-1:AAAA"); !last.signed("abc.narinfo", sumOf([]byte{byte(2999 % 256), byte(2999 >> 8)})) {
		t.Error("after compaction the memo lost the latest text")
	}
}

// A file:// cache lists no ETags and reads cost no request: no memo is
// kept (it would only cost memory on a 100,000-path push).
func TestSignMemoNotForLocalCaches(t *testing.T) {
	dir, memo := t.TempDir(), t.TempDir()
	target, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPusher(t, cachetest.NewMem(), nil)
	p.Target, p.SignPresent, p.SignedMemoDir = target, true, memo
	if _, err := p.Push(context.Background(), []*store.PathInfo{info("a"), info("b", info("a"))}); err != nil {
		t.Fatal(err)
	}
	if p.memo != nil {
		t.Error("a Pusher into a file:// cache keeps a memo of signed narinfos")
	}
	if entries, _ := os.ReadDir(memo); len(entries) != 0 {
		t.Errorf("memo directory holds %d files after a push into file://", len(entries))
	}
}

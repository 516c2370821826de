package upload

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// Pushing over cached paths that lack our signature signs them: the
// others' signatures and every other line stay, each narinfo is read
// once per Pusher, and a narinfo of other content is not signed.
func TestPushSignsPresent(t *testing.T) {
	m := cachetest.NewMem()
	dep := info("dep")
	top := info("top", dep)
	other := info("other")
	closure := []*store.PathInfo{dep, top, other}
	// Someone else pushed them: unsigned pusher, then a foreign key.
	first := newTestPusher(t, m, nil)
	first.Key = nil
	if _, err := first.Push(context.Background(), closure); err != nil {
		t.Fatal(err)
	}
	foreign := testKey(t)
	foreign.Name = "elsewhere-1"
	depKey, topKey, otherKey := narinfoKeyOf(t, dep.Path), narinfoKeyOf(t, top.Path), narinfoKeyOf(t, other.Path)
	ni := mustNarInfo(t, m.Objects[topKey])
	ni.Sign(foreign)
	b, _ := ni.MarshalText()
	m.Objects[topKey] = append(b, "X-Unknown: kept\n"...)
	// other's cached narinfo describes other content (another build).
	ni = mustNarInfo(t, m.Objects[otherKey])
	ni.NarSize++
	m.Objects[otherKey], _ = ni.MarshalText()
	before := string(m.Objects[otherKey])

	p := newTestPusher(t, m, nil)
	p.SignPresent = true
	res, err := p.Push(context.Background(), closure)
	if err != nil {
		t.Fatal(err)
	}
	if res.Signed != 2 || res.Present != 1 || res.Uploaded != 0 || len(res.NotSigned) != 1 {
		t.Fatalf("result %+v: want 2 signed, 1 present (not signed), nothing uploaded", res)
	}
	if why := res.NotSigned[other.Path]; !strings.Contains(why, "another NarHash or NarSize") {
		t.Errorf("not signed reason = %q", why)
	}
	if string(m.Objects[otherKey]) != before {
		t.Error("the narinfo of other content was rewritten")
	}
	ours := []*nar.PublicKey{p.Key.Public()}
	for _, k := range []string{depKey, topKey} {
		if mustNarInfo(t, m.Objects[k]).Verify(ours) != 1 {
			t.Errorf("%s: no valid signature by our key:\n%s", k, m.Objects[k])
		}
	}
	topText := string(m.Objects[topKey])
	if mustNarInfo(t, m.Objects[topKey]).Verify([]*nar.PublicKey{foreign.Public()}) != 1 || !strings.Contains(topText, "X-Unknown: kept\n") {
		t.Errorf("top lost the other signature or a line:\n%s", topText)
	}
	// Again: nothing to sign, and the signed narinfos are not read again.
	puts := m.Puts[topKey]
	res, err = p.Push(context.Background(), closure)
	if err != nil || res.Signed != 0 || res.Present != 3 {
		t.Fatalf("second push: %+v, %v", res, err)
	}
	if m.Puts[topKey] != puts {
		t.Error("a signed narinfo was written again")
	}
}

func TestAddSignature(t *testing.T) {
	k := testKey(t)
	pi := info("x")
	good := &nar.NarInfo{StorePath: pi.Path, URL: "nar/a.nar.xz", Compression: "xz", NarHash: pi.NarHash, NarSize: pi.NarSize}
	text := func(ni *nar.NarInfo) []byte { b, _ := ni.MarshalText(); return b }
	signed := *good
	signed.Sign(k)
	twin := testKey(t) // same name, other key: its signature is replaced
	byTwin := *good
	byTwin.Sign(twin)
	wrongRefs := *good
	wrongRefs.References = []string{strings.TrimPrefix(info("y").Path, nar.StoreDir+"/")}
	for _, tt := range []struct {
		name    string
		in      []byte
		changed bool
		why     string
	}{
		{"unsigned", text(good), true, ""},
		{"already signed", text(&signed), false, ""},
		{"same name, other key", text(&byTwin), true, ""},
		{"other references", text(&wrongRefs), false, "other References"},
		{"garbage", []byte("StorePath: nope\n"), false, "cannot be parsed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, why := AddSignature(tt.in, pi, k)
			if (out != nil) != tt.changed || !strings.Contains(why, tt.why) || (tt.why == "") != (why == "") {
				t.Fatalf("AddSignature = %q, %q", out, why)
			}
			if out == nil {
				return
			}
			ni := mustNarInfo(t, out)
			if ni.Verify([]*nar.PublicKey{k.Public()}) != 1 || len(ni.Sigs) != 1 {
				t.Errorf("result has sigs %v, want exactly one valid by %s", ni.Sigs, k.Name)
			}
		})
	}
}

func mustNarInfo(t *testing.T, b []byte) *nar.NarInfo {
	t.Helper()
	ni, err := nar.ParseNarInfo(b)
	if err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	return ni
}

// getCounter counts the narinfos read.
type getCounter struct {
	*cachetest.Mem
	gets atomic.Int64
}

func (g *getCounter) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasSuffix(key, ".narinfo") {
		g.gets.Add(1)
	}
	return g.Mem.Get(ctx, key)
}

// A Pusher never reads back a narinfo it wrote with its key (the
// daemon's later batches find their earlier paths cached), and a new
// Pusher (a new `nixpushd push`) reads each cached narinfo once, signing
// the whole closure when it was pushed unsigned.
func TestSignPresentReads(t *testing.T) {
	ctx := context.Background()
	var closure []*store.PathInfo
	var prev *store.PathInfo
	for i := range 50 {
		var pi *store.PathInfo
		if prev == nil {
			pi = info(fmt.Sprintf("p%02d", i))
		} else {
			pi = info(fmt.Sprintf("p%02d", i), prev)
		}
		closure = append(closure, pi)
		prev = pi
	}
	key := testKey(t)
	for _, tc := range []struct {
		name           string
		firstKey       *nar.SecretKey
		samePusherGets int64 // the first Pusher pushing again
		newPusherGets  int64
		signed         int
	}{
		{"pushed with the key", key, 0, 50, 0},
		{"pushed unsigned", nil, 0, 50 + 50, 50}, // all, then all again under the lock
	} {
		g := &getCounter{Mem: cachetest.NewMem()}
		first := newTestPusher(t, g.Mem, nil)
		first.Target = g
		first.Key, first.SignPresent = tc.firstKey, tc.firstKey != nil
		if _, err := first.Push(ctx, closure); err != nil {
			t.Fatal(err)
		}
		g.gets.Store(0)
		if _, err := first.Push(ctx, closure); err != nil || g.gets.Load() != tc.samePusherGets {
			t.Errorf("%s: the same Pusher again read %d narinfos (%v), want %d", tc.name, g.gets.Load(), err, tc.samePusherGets)
		}
		p := newTestPusher(t, g.Mem, nil)
		p.Target = g
		p.Key, p.SignPresent = key, true
		g.gets.Store(0)
		res, err := p.Push(ctx, closure)
		if err != nil {
			t.Fatal(err)
		}
		if res.Signed != tc.signed || g.gets.Load() != tc.newPusherGets {
			t.Errorf("%s: %d signed after %d narinfo reads, want %d after %d", tc.name, res.Signed, g.gets.Load(), tc.signed, tc.newPusherGets)
		}
		for _, pi := range closure {
			if mustNarInfo(t, g.Objects[narinfoKeyOf(t, pi.Path)]).Verify([]*nar.PublicKey{key.Public()}) != 1 {
				t.Fatalf("%s: %s lacks our signature", tc.name, pi.Path)
			}
		}
	}
}

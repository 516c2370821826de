package upload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nixpushd/nixpushd/internal/cachetest"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// dirInfo makes a PathInfo for name whose NAR is the dump of dir.
func dirInfo(t *testing.T, name, dir string) *store.PathInfo {
	pi := info(name)
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, dir); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(buf.Bytes())
	pi.NarHash, pi.NarSize = nar.NewSHA256(d[:]), int64(buf.Len())
	return pi
}

// The .ls listing and debug-info links go up after the NAR and before the
// narinfo, hold what the parser lists, and are absent when turned off.
func TestPushSidecars(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef012345"
	dir := t.TempDir() + "/p"
	for _, f := range []string{"bin/x", "lib/debug/.build-id/ab/" + id + ".debug", "share/doc"} {
		os.MkdirAll(filepath.Dir(dir+"/"+f), 0o755)
		os.WriteFile(dir+"/"+f, []byte(f), 0o755)
	}
	pi := dirInfo(t, "withdebug", dir)
	for _, on := range []bool{false, true} {
		m := cachetest.NewMem()
		p := newTestPusher(t, m, nil)
		p.NarListings, p.DebugInfo = on, on
		p.dump = func(w io.Writer, _ string) error { return nar.DumpPath(w, dir) }
		res, err := p.Push(context.Background(), []*store.PathInfo{pi})
		if err != nil || len(res.Failed) != 0 {
			t.Fatal(err, res.Failed)
		}
		if want := map[bool]int{true: 1}[on]; res.NarListings != want || res.DebugInfoLinks != want {
			t.Errorf("on=%v: counted %d listings and %d debug-info links, want %d of each", on, res.NarListings, res.DebugInfoLinks, want)
		}
		key := narinfoKeyOf(t, pi.Path)
		ni, err := nar.ParseNarInfo(m.Objects[key])
		if err != nil {
			t.Fatal(err)
		}
		sp, _ := nar.ParseStorePath(pi.Path)
		ls, dbg := sp.Hash+".ls", "debuginfo/ab"+id+".debug"
		if !on {
			if _, ok := m.Objects[ls]; ok {
				t.Fatal(".ls written while off")
			}
			if _, ok := m.Objects[dbg]; ok {
				t.Fatal("debuginfo written while off")
			}
			continue
		}
		for _, k := range []string{ls, dbg} {
			if i := m.Index(k); i < 0 || i < m.Index(ni.URL) || i > m.Index(key) {
				t.Fatalf("%s at %d: not between the NAR (%d) and the narinfo (%d): %v", k, i, m.Index(ni.URL), m.Index(key), m.Order)
			}
		}
		parser := nar.NewParser()
		nar.DumpPath(parser, dir)
		l, _ := parser.Listing()
		want, _ := l.MarshalJSON()
		if !bytes.Equal(m.Objects[ls], want) {
			t.Fatalf(".ls:\n got %s\nwant %s", m.Objects[ls], want)
		}
		wantDbg := `{"archive":"../` + ni.URL + `","member":"lib/debug/.build-id/ab/` + id + `.debug"}`
		if string(m.Objects[dbg]) != wantDbg {
			t.Fatalf("debuginfo: %s, want %s", m.Objects[dbg], wantDbg)
		}
	}
}

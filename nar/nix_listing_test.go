package nar

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// TestListingMatchesNix checks the listing and the debug-info links of a
// real store path against what Nix writes with
// `nix copy --to 'file://DIR?write-nar-listing=true&index-debug-info=true'`.
func TestListingMatchesNix(t *testing.T) {
	testenv.RequireNix(t)
	out, _ := testenv.BuildFormatsPath(t, strconv.FormatInt(time.Now().UnixNano(), 36))
	dir := t.TempDir()
	testenv.Nix(t, "nix", "copy", "--to", "file://"+dir+"?write-nar-listing=true&index-debug-info=true&compression=xz", out)

	p := NewParser()
	if err := DumpPath(p, out); err != nil {
		t.Fatal(err)
	}
	l, err := p.Listing()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ParseStorePath(out)
	theirs, err := os.ReadFile(filepath.Join(dir, sp.Hash+".ls"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(ours, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(theirs, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("listing differs from Nix's:\nours  %s\nNix's %s", ours, theirs)
	}
	if !bytes.Equal(ours, theirs) {
		t.Logf("equal as JSON but not byte for byte:\nours  %s\nNix's %s", ours, theirs)
	}

	// Debug-info links: same keys, same JSON.
	info, err := ParseNarInfo(mustRead(t, filepath.Join(dir, sp.Hash+".narinfo")))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	filepath.WalkDir(filepath.Join(dir, "debuginfo"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			var v any
			if err := json.Unmarshal(mustRead(t, path), &v); err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(dir, path)
			want[rel] = v
		}
		return nil
	})
	got := map[string]any{}
	for _, link := range l.DebugInfoLinks(info.URL) {
		var v any
		if err := json.Unmarshal(link.Body, &v); err != nil {
			t.Fatal(err)
		}
		got[link.Key] = v
	}
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("debug-info links:\nours  %v\nNix's %v", got, want)
	}
	if k := "debuginfo/ab" + testenv.FormatsBuildID + ".debug"; got[k] == nil {
		t.Fatalf("no link %s", k)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

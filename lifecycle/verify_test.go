package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/nar"
)

// noList hides a target's listing, as an http:// cache has none.
type noList struct{ cache.Target }

// With roots, verify walks their closures without listing: a missing
// NAR, a missing reference and a root the cache lacks are named; paths
// outside the closure are not looked at.
func TestVerifyWalksClosure(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{
		{name: "dep"}, {name: "mid", refs: []string{"dep", "gone"}}, {name: "app", refs: []string{"mid"}},
		{name: "nonar"}, {name: "outside"},
	})
	f, _ := file.New(dir)
	os.Remove(filepath.Join(dir, hashOf("gone")+".narinfo"))
	b, _ := os.ReadFile(filepath.Join(dir, hashOf("outside")+".narinfo"))
	os.WriteFile(filepath.Join(dir, hashOf("outside")+".narinfo"), append(b, "garbage\n"...), 0o644)
	// nonar's NAR gone.
	nb, _ := os.ReadFile(filepath.Join(dir, hashOf("nonar")+".narinfo"))
	for _, line := range strings.Split(string(nb), "\n") {
		if u, ok := strings.CutPrefix(line, "URL: "); ok {
			os.Remove(filepath.Join(dir, u))
		}
	}
	got := map[string]string{}
	res, err := Verify(context.Background(), noList{f}, VerifyOptions{Roots: []string{storePath("app"), storePath("nonar"), storePath("absent")}},
		func(p Problem) { got[p.Kind] = p.String() })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		ProblemReference: storePath("mid"),
		ProblemNARGone:   storePath("nonar"),
		ProblemNotCached: storePath("absent"),
	}
	for kind, path := range want {
		if !strings.HasPrefix(got[kind], path+": "+kind) {
			t.Errorf("%s: got %q, want a line about %s", kind, got[kind], path)
		}
	}
	if res.Problems != 3 || res.NarInfos != 4 || res.Roots != 3 {
		t.Errorf("result %+v, want 3 problems in 4 narinfos walked from 3 roots: %v", res, got)
	}
	if s := res.String(); !strings.Contains(s, "closure of 3 roots") {
		t.Errorf("summary does not name the closure: %s", s)
	}
}

// Orphan NARs and narinfos no client asks for are notes, not problems.
func TestVerifyNotes(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "a"}})
	os.WriteFile(filepath.Join(dir, "nar", "orphan.nar"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "not-a-hash.narinfo"), []byte("x"), 0o644)
	f, _ := file.New(dir)
	var notes []string
	res, err := Verify(context.Background(), f, VerifyOptions{Note: func(n Note) { notes = append(notes, n.String()) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Problems != 0 || len(notes) != 2 {
		t.Fatalf("problems %d, notes %q", res.Problems, notes)
	}
	if !strings.HasPrefix(notes[0], "nar/orphan.nar: orphan-nar: ") || !strings.HasPrefix(notes[1], "not-a-hash.narinfo: stray-narinfo: ") {
		t.Errorf("notes %q", notes)
	}
	if s := res.String(); !strings.Contains(s, "notes: 1 orphan-nar, 1 stray-narinfo") || !strings.HasSuffix(s, "no problems") {
		t.Errorf("summary %s", s)
	}
}

// A signature under a trusted key's name by another key of that name is
// named as such: Nix keeps one key per name, so that is two machines
// sharing a name, not an unknown signer.
func TestSignatureDetail(t *testing.T) {
	ours, _ := nar.GenerateSecretKey("b1-nixpushd-1")
	twin, _ := nar.GenerateSecretKey("b1-nixpushd-1")
	other, _ := nar.GenerateSecretKey("b2-nixpushd-1")
	trusted := []*nar.PublicKey{ours.Public()}
	base := func() *nar.NarInfo {
		return &nar.NarInfo{StorePath: storePath("x"), NarHash: nar.Hash{Algo: "sha256", Digest: make([]byte, 32)}, NarSize: 8}
	}
	for _, tt := range []struct {
		name  string
		sign  []*nar.SecretKey
		want  string
		valid bool
	}{
		{"unsigned", nil, "(unsigned)", false},
		{"other name", []*nar.SecretKey{other}, "(signed by b2-nixpushd-1)", false},
		{"same name, other key", []*nar.SecretKey{twin}, "signed as b1-nixpushd-1, but by another public key than the trusted key of that name", false},
		{"ours", []*nar.SecretKey{ours}, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ni := base()
			for _, k := range tt.sign {
				ni.Sign(k)
			}
			if got := ni.Verify(trusted) > 0; got != tt.valid {
				t.Fatalf("valid = %v, want %v", got, tt.valid)
			}
			if tt.valid {
				return
			}
			if d := signatureDetail(ni, trusted); !strings.Contains(d, tt.want) {
				t.Errorf("detail %q lacks %q", d, tt.want)
			}
		})
	}
}

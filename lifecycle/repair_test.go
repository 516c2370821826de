package lifecycle

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// fakeStore has the paths of infos, nothing else.
type fakeStore struct {
	store.Store
	infos map[string]*store.PathInfo
}

func (f *fakeStore) ValidPaths(_ context.Context, paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if f.infos[p] != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeStore) PathInfos(_ context.Context, paths []string) ([]*store.PathInfo, error) {
	var out []*store.PathInfo
	for _, p := range paths {
		pi := f.infos[p]
		if pi == nil {
			return nil, store.ErrNotValid
		}
		out = append(out, pi)
	}
	return out, nil
}

func genKey(t *testing.T, name string) *nar.SecretKey {
	_, sk, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &nar.SecretKey{Name: name, Key: sk}
}

// Repair plans: a signature problem needs a new narinfo, refused without
// a key and with a key clients do not trust; the old narinfo's other
// signatures are kept when the fingerprint is unchanged, bad ones by a
// trusted key's name are not; a path the store lacks is named.
func TestPlanRepair(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "a"}, {name: "b"}})
	f, _ := file.New(dir)
	ctx := context.Background()
	key, other := genKey(t, "cache-1"), genKey(t, "upstream-1")
	// a: signed by upstream (still valid) and a corrupt cache-1 signature.
	niPath := filepath.Join(dir, hashOf("a")+".narinfo")
	b, _ := os.ReadFile(niPath)
	ni, err := nar.ParseNarInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	ni.Sign(other)
	bad := genKey(t, "cache-1")
	ni.Sign(bad)
	text, _ := ni.MarshalText()
	os.WriteFile(niPath, text, 0o644)
	upstreamSig := ni.Sigs[0]

	st := &fakeStore{infos: map[string]*store.PathInfo{
		storePath("a"): {Path: storePath("a"), NarHash: ni.NarHash, NarSize: ni.NarSize},
	}}
	problems := []Problem{
		{Kind: ProblemSignature, Hash: hashOf("a"), StorePath: storePath("a")},
		{Kind: ProblemSignature, Hash: hashOf("b"), StorePath: storePath("b")},
	}
	trusted := []*nar.PublicKey{key.Public()}

	plan, err := PlanRepair(ctx, f, problems, RepairOptions{Store: st, TrustedKeys: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 0 || len(plan.Refused) != 1 || plan.Refused[0].StorePath != storePath("a") {
		t.Errorf("no key: want a refused, got %+v", plan)
	}
	if !strings.Contains(plan.Refused[0].String(), "signed by upstream-1, cache-1") {
		t.Errorf("refusal does not name the signers: %s", plan.Refused[0])
	}
	if len(plan.Unrepairable) != 1 || !strings.Contains(plan.Unrepairable[0], storePath("b")+": signature: not in the local store") {
		t.Errorf("unrepairable %q", plan.Unrepairable)
	}
	if _, err := ExecuteRepair(ctx, f, nil, st, plan); err == nil {
		t.Error("a plan with refusals was executed")
	}

	if _, err := PlanRepair(ctx, f, problems, RepairOptions{Store: st, TrustedKeys: trusted, Key: other}); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("untrusted key: %v", err)
	}

	plan, err = PlanRepair(ctx, f, problems, RepairOptions{Store: st, TrustedKeys: trusted, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Actions) != 1 || plan.Actions[0].Kind != ActionRewrite || len(plan.Refused) != 0 {
		t.Fatalf("with the key: %+v", plan)
	}
	if got := plan.Actions[0].OldSigs; !slices.Equal(got, []string{upstreamSig}) {
		t.Errorf("kept signatures %q, want only upstream's %q", got, upstreamSig)
	}
	if got := keptSigs(st.infos[storePath("a")], plan.Actions[0].OldSigs, key); !slices.Equal(got, []string{upstreamSig}) {
		t.Errorf("keptSigs %q", got)
	}
}

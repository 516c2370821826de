package lifecycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// noDelete is a file cache without the Deleter capability.
type noDelete struct{ cache.Target }

// denyDelete is a file cache whose credentials may not delete.
type denyDelete struct{ *file.Dir }

func (denyDelete) Delete(context.Context, []string) error {
	return &cache.PermanentError{Config: true, Err: errors.New("AccessDenied")}
}

func verifyProblems(t *testing.T, tg cache.Target) []Problem {
	t.Helper()
	var ps []Problem
	if _, err := Verify(context.Background(), tg, VerifyOptions{}, func(p Problem) { ps = append(ps, p) }); err != nil {
		t.Fatal(err)
	}
	return ps
}

func kinds(plan *RepairPlan) []string {
	var out []string
	for _, a := range plan.Actions {
		out = append(out, a.Kind+" "+a.StorePath+" "+strings.Join(a.Objects, ","))
	}
	return out
}

// Realisations: an unparsable .doi the local store knows is written
// again (signed, equal to what push writes); one whose outPath the local
// store has is repaired by pushing that path, .doi untouched; what the
// local store cannot explain is deleted, or, when the target or the
// credentials cannot delete, named with the fix; a signed one is not
// replaced without a key. Debug-info links with names no path can have
// are deleted.
func TestRepairRealisations(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "a"}})
	ctx := context.Background()
	key := genKey(t, "cache-1")

	badKnown, _ := doiOf("a", 1) // unparsable, the local store knows it
	putAged(t, dir, badKnown, "{", 0)
	badUnknown, _ := doiOf("x", 2) // unparsable, unknown
	putAged(t, dir, badUnknown, `{"id":1}`, 0)
	goneKey, goneBody := doiOf("gone", 3) // outPath neither cached nor local
	putAged(t, dir, goneKey, goneBody, 0)
	localKey, localBody := doiOf("b", 4) // outPath local, not cached
	putAged(t, dir, localKey, localBody, 0)
	putAged(t, dir, "debuginfo/nonsense", "{", 0)

	local := &nar.Realisation{ID: strings.TrimSuffix(strings.TrimPrefix(badKnown, nar.RealisationPrefix), ".doi"),
		OutPath: strings.TrimPrefix(storePath("a"), nar.StoreDir+"/"), DependentRealisations: map[string]string{}}
	var asked []string
	st := &fakeStore{infos: map[string]*store.PathInfo{storePath("a"): {Path: storePath("a")}, storePath("b"): {Path: storePath("b")}}}
	opts := RepairOptions{Store: st, Key: key, Realisations: func(_ context.Context, ids []string) ([]*nar.Realisation, error) {
		asked = append(asked, ids...)
		if slices.Contains(ids, local.ID) {
			return []*nar.Realisation{local}, nil
		}
		return nil, nil
	}}

	f, _ := file.New(dir)
	problems := verifyProblems(t, f)
	if len(problems) != 5 {
		t.Fatalf("verify: %v", problems)
	}

	// A target that cannot delete, and credentials that may not: named.
	for _, tg := range []cache.Target{noDelete{f}, denyDelete{f}} {
		plan, err := PlanRepair(ctx, tg, problems, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Unrepairable) != 3 {
			t.Fatalf("%T: unrepairable %q", tg, plan.Unrepairable)
		}
		want := "cannot delete"
		if _, ok := tg.(denyDelete); ok {
			want = "run verify --repair with the gc user's credentials"
		}
		for _, u := range plan.Unrepairable {
			if !strings.Contains(u, want) {
				t.Errorf("%T: %q does not say %q", tg, u, want)
			}
		}
		if slices.ContainsFunc(plan.Actions, func(a RepairAction) bool { return a.Kind == ActionDelete }) {
			t.Errorf("%T: deletion planned: %v", tg, kinds(plan))
		}
	}

	plan, err := PlanRepair(ctx, f, problems, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		ActionPush + " " + storePath("b") + " ",
		ActionRealisation + " " + storePath("a") + " " + badKnown,
		ActionDelete + "  " + badUnknown,
		ActionDelete + "  " + goneKey,
		ActionDelete + "  debuginfo/nonsense",
	}
	if got := kinds(plan); !slices.Equal(got, want) || len(plan.Unrepairable) != 0 || len(plan.Refused) != 0 {
		t.Fatalf("plan %q, want %q; unrepairable %q", got, want, plan.Unrepairable)
	}
	if !slices.Contains(asked, local.ID) {
		t.Errorf("the local store was not asked for %s (asked %q)", local.ID, asked)
	}
	for _, a := range plan.Actions {
		if a.String() == "" || !strings.Contains(a.String(), a.Problems[0]) {
			t.Errorf("action line %q", a)
		}
	}

	// Without the pushes (which need the real path), execute the rest.
	plan.Actions = plan.Actions[1:]
	res, err := ExecuteRepair(ctx, f, nil, st, plan)
	if err != nil || len(res.Failed) != 0 {
		t.Fatal(err, res.Failed)
	}
	if res.Realisations != 1 || res.Deleted != 3 {
		t.Errorf("result %+v", res)
	}
	b, err := os.ReadFile(filepath.Join(dir, badKnown))
	if err != nil {
		t.Fatal(err)
	}
	w := *local
	w.Sign(key)
	wantBody, _ := w.MarshalJSON()
	if string(b) != string(wantBody) {
		t.Errorf("rewritten .doi:\n%s\nwant\n%s", b, wantBody)
	}
	for _, k := range []string{goneKey, badUnknown, "debuginfo/nonsense"} {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			t.Errorf("%s not deleted", k)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, localKey)); string(b) != localBody {
		t.Errorf("the .doi whose outPath is pushed was changed: %s", b)
	}

	// A signed realisation is not replaced by an unsigned one.
	other := genKey(t, "upstream-1")
	signed := &nar.Realisation{ID: local.ID, OutPath: strings.TrimPrefix(storePath("gone"), nar.StoreDir+"/"), DependentRealisations: map[string]string{}}
	signed.Sign(other)
	sb, _ := signed.MarshalJSON()
	putAged(t, dir, badKnown, string(sb), 0)
	problems = verifyProblems(t, f)
	noKey := opts
	noKey.Key = nil
	plan, err = PlanRepair(ctx, f, problems, noKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Refused) != 1 || plan.Refused[0].Key != badKnown || !strings.Contains(plan.Refused[0].String(), "signed by upstream-1") {
		t.Fatalf("refused %v (actions %q)", plan.Refused, kinds(plan))
	}
	if _, err := ExecuteRepair(ctx, f, nil, st, plan); err == nil {
		t.Error("a plan with a refusal was executed")
	}
	plan, err = PlanRepair(ctx, f, problems, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(plan); !slices.Contains(got, ActionRealisation+" "+storePath("a")+" "+badKnown) || len(plan.Refused) != 0 {
		t.Errorf("with the key: %q refused %v", got, plan.Refused)
	}
}

func TestDebugMember(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef012345"
	for key, want := range map[string]string{
		"debuginfo/ab" + id + ".debug": "lib/debug/.build-id/ab/" + id + ".debug",
		"debuginfo/ab" + id:            "",
		"debuginfo/AB" + id + ".debug": "",
		"debuginfo/nonsense":           "",
		"nar/ab" + id + ".debug":       "",
	} {
		if got := debugMember(key); got != want {
			t.Errorf("debugMember(%s) = %q, want %q", key, got, want)
		}
	}
}

// Debug-info links, with real Nix: a link whose NAR is gone comes back
// after the NAR (restored under its narinfo's URL) naming it; an
// unparsable one is found through the local store's debug file and
// written again; both equal what push wrote. A link no cached local
// path explains is deleted.
func TestRepairDebugInfoLinks(t *testing.T) {
	testenv.RequireNix(t)
	out, _ := testenv.BuildFormatsPath(t, "repair-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	st, err := store.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	dir := t.TempDir()
	f, _ := file.New(dir)
	co := compression.Options{Method: "xz"}
	comp, err := compression.New(co)
	if err != nil {
		t.Fatal(err)
	}
	p := &upload.Pusher{Target: f, Compressor: comp, DebugInfo: true, TempDir: t.TempDir(), Log: quietLog()}
	closure, err := st.Closure(ctx, []string{out})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Push(ctx, closure); err != nil || len(res.Failed) > 0 {
		t.Fatal(err, res)
	}
	link := "debuginfo/ab" + testenv.FormatsBuildID + ".debug"
	pushed, err := os.ReadFile(filepath.Join(dir, link))
	if err != nil {
		t.Fatalf("push wrote no link: %v", err)
	}
	sp, _ := nar.ParseStorePath(out)
	ni, err := readNarInfo(ctx, f, sp.Hash)
	if err != nil || ni == nil {
		t.Fatal(err)
	}
	opts := RepairOptions{Store: st, Compression: co, TempDir: t.TempDir()}
	repair := func(what string, want []string) {
		t.Helper()
		plan, err := PlanRepair(ctx, f, verifyProblems(t, f), opts)
		if err != nil {
			t.Fatal(err)
		}
		defer plan.Close()
		if got := kinds(plan); !slices.Equal(got, want) || len(plan.Unrepairable)+len(plan.Refused) > 0 {
			t.Fatalf("%s: plan %q, want %q; unrepairable %q refused %v", what, got, want, plan.Unrepairable, plan.Refused)
		}
		res, err := ExecuteRepair(ctx, f, nil, st, plan)
		if err != nil || len(res.Failed) > 0 {
			t.Fatalf("%s: %v %v", what, err, res.Failed)
		}
		if ps := verifyProblems(t, f); len(ps) > 0 {
			t.Errorf("%s: after repair: %v", what, ps)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, link)); string(b) != string(pushed) {
			t.Errorf("%s: link %s, push wrote %s", what, b, pushed)
		}
	}

	// The NAR is gone: the link names a missing NAR, and verify says
	// whose it is.
	os.Remove(filepath.Join(dir, ni.URL))
	ps := verifyProblems(t, f)
	if !slices.ContainsFunc(ps, func(p Problem) bool { return p.Key == link && p.StorePath == out && p.Hash == sp.Hash }) {
		t.Errorf("verify does not name the path of the link's NAR: %+v", ps)
	}
	repair("NAR gone", []string{ActionNAR + " " + out + " ", ActionDebugInfo + " " + out + " " + link})

	// The link does not parse, and another names a debug file nothing has.
	stray := "debuginfo/ab" + strings.Repeat("e", 38) + ".debug"
	putAged(t, dir, link, "not json", 0)
	putAged(t, dir, stray, "{", 0)
	repair("unparsable", []string{ActionDebugInfo + " " + out + " " + link, ActionDelete + "  " + stray})
	if _, err := os.Stat(filepath.Join(dir, stray)); err == nil {
		t.Errorf("%s not deleted", stray)
	}
}

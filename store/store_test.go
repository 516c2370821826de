package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

const (
	pA = "/nix/store/l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a"
	pB = "/nix/store/yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b"
	pC = "/nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c"
	dC = "/nix/store/9sgk06jv6kb6kacz77nc5wb91f6nsn1z-c.drv"
)

func TestParsePathInfoJSON(t *testing.T) {
	want, err := nar.ParseHash("sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7")
	if err != nil {
		t.Fatal(err)
	}
	sri := want.SRI()
	b64 := strings.TrimPrefix(sri, "sha256-")
	tests := []struct {
		name, in string
	}{
		{"nix 2.8 array", `[{"path":"` + pC + `","narHash":"` + sri + `","narSize":928,"references":["` + pB + `","` + pA + `","` + pC + `"],"deriver":"` + dC + `","registrationTime":1700000000,"ultimate":true,"signatures":["k-1:abc"]}]`},
		{"nix 2.19 object", `{"` + pC + `":{"narHash":"` + sri + `","narSize":928,"references":["` + pA + `","` + pB + `","` + pC + `"],"deriver":"` + dC + `","registrationTime":1700000000,"ultimate":true,"signatures":["k-1:abc"],"ca":null}}`},
		{"nix 2.33 structured hash, base names", `{"` + pC + `":{"narHash":{"algorithm":"sha256","format":"base64","hash":"` + b64 + `"},"narSize":928,"references":["yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b","l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a","hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c"],"deriver":"9sgk06jv6kb6kacz77nc5wb91f6nsn1z-c.drv","registrationTime":1700000000,"ultimate":true,"signatures":["k-1:abc"],"ca":null,"version":2}}`},
		{"nix32 string", `[{"path":"` + pC + `","narHash":"` + want.String() + `","narSize":928,"references":["` + pA + `","` + pB + `","` + pC + `"],"deriver":"` + dC + `","registrationTime":1700000000,"ultimate":true,"signatures":["k-1:abc"]}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			infos, err := ParsePathInfoJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 1 {
				t.Fatalf("got %d infos", len(infos))
			}
			pi := infos[0]
			if pi.Path != pC || !pi.NarHash.Equal(want) || pi.NarSize != 928 || pi.Deriver != dC || !pi.Ultimate ||
				pi.RegistrationTime.Unix() != 1700000000 || !reflect.DeepEqual(pi.Sigs, []string{"k-1:abc"}) {
				t.Errorf("got %+v", pi)
			}
			if !reflect.DeepEqual(pi.References, []string{pC, pA, pB}) && !reflect.DeepEqual(pi.References, sortedCopy(pA, pB, pC)) {
				t.Errorf("references %v", pi.References)
			}
			if !slices.IsSorted(pi.References) {
				t.Errorf("references not sorted: %v", pi.References)
			}
		})
	}
}

func sortedCopy(s ...string) []string { return slices.Sorted(slices.Values(s)) }

func TestParsePathInfoJSONInvalid(t *testing.T) {
	infos, err := ParsePathInfoJSON([]byte(`{"` + pA + `":null}`))
	if err != nil || len(infos) != 0 {
		t.Errorf("null entry: %v %v", infos, err)
	}
	infos, err = ParsePathInfoJSON([]byte(`[{"path":"` + pA + `","valid":false}]`))
	if err != nil || len(infos) != 0 {
		t.Errorf("valid:false entry: %v %v", infos, err)
	}
	for _, bad := range []string{``, `"x"`, `[{"path":"` + pA + `","narHash":"md5-zz"}]`, `{"` + pA + `":{"narHash":{"algorithm":"sha256","format":"rot13","hash":"x"}}}`} {
		if _, err := ParsePathInfoJSON([]byte(bad)); err == nil {
			t.Errorf("ParsePathInfoJSON(%q): want error", bad)
		}
	}
}

func TestSortTopo(t *testing.T) {
	a := &PathInfo{Path: pA, References: []string{pA}}
	b := &PathInfo{Path: pB, References: []string{pA}}
	c := &PathInfo{Path: pC, References: []string{pA, pB, pC, "/nix/store/00000000000000000000000000000000-outside"}}
	for _, in := range [][]*PathInfo{{c, b, a}, {a, b, c}, {b, c, a}} {
		got := SortTopo(in)
		var paths []string
		for _, pi := range got {
			paths = append(paths, pi.Path)
		}
		if want := []string{pA, pB, pC}; !reflect.DeepEqual(paths, want) {
			t.Errorf("SortTopo = %v, want %v", paths, want)
		}
	}
}

func TestToStorePath(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "result")
	if err := os.Symlink(pC+"/bin/x", link); err != nil {
		t.Fatal(err)
	}
	// The target does not exist here, so EvalSymlinks fails: that must be a
	// clear error, not a panic or a wrong path.
	if _, err := ToStorePath(link); err == nil {
		t.Error("dangling symlink: want error")
	}
	if _, err := ToStorePath(dir); err == nil || !strings.Contains(err.Error(), "not in /nix/store") {
		t.Errorf("non-store dir: %v", err)
	}
}

// Real Nix: both backends agree on paths Nix built.
func TestBackendsAgree(t *testing.T) {
	if _, err := exec.LookPath("nix-build"); err != nil {
		testenv.Unavailable(t, "nix-build not installed: Nix is required for this test")
	}
	dir := t.TempDir()
	expr := filepath.Join(dir, "t.nix")
	seed := filepath.Base(dir)
	os.WriteFile(expr, []byte(`let
  mk = name: script: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" script]; seed = "`+seed+`"; PATH = "/usr/bin:/bin"; };
  a = mk "store-test-a" "echo a > $out";
  b = mk "store-test-b" "mkdir $out; echo ${a} > $out/ref; echo $out > $out/self";
in b`), 0o644)
	cmd := exec.Command("nix-build", "--option", "build-users-group", "", "--no-out-link", expr)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-build: %v", err)
	}
	top := strings.TrimSpace(string(out))
	ctx := context.Background()
	db, err := OpenDB(DefaultDB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fromDB, err := db.Closure(ctx, []string{top})
	if err != nil {
		t.Fatal(err)
	}
	fromCLI, err := NewCLI().Closure(ctx, []string{top})
	if err != nil {
		t.Fatal(err)
	}
	if len(fromDB) != 2 || fromDB[1].Path != top || len(fromDB[1].References) != 2 {
		t.Fatalf("DB closure: %+v", fromDB)
	}
	if !reflect.DeepEqual(fromDB, fromCLI) {
		for i := range fromDB {
			t.Errorf("DB  %+v\nCLI %+v", fromDB[i], fromCLI[i])
		}
	}
	regs, err := db.RegisteredSince(ctx, fromDB[1].RegistrationTime.Unix())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(regs, func(r Registered) bool { return r.Path == top })
	if i < 0 {
		t.Fatalf("RegisteredSince misses %s", top)
	}
	after, err := db.RegisteredAfter(ctx, regs[i].Seq-1)
	if err != nil || len(after) == 0 || after[0] != regs[i] {
		t.Errorf("RegisteredAfter(%d): %v %v, want %s first", regs[i].Seq-1, after, err, top)
	}
	if last, err := db.LastSeq(ctx); err != nil || last < regs[i].Seq {
		t.Errorf("LastSeq %d %v, want at least %d", last, err, regs[i].Seq)
	}
	// The .drv knows its output, in both backends.
	drv := fromDB[1].Deriver
	for name, s := range map[string]Store{"db": db, "cli": NewCLI()} {
		outs, err := s.DerivationOutputs(ctx, drv)
		if err != nil || len(outs) != 1 || outs[0] != top {
			t.Errorf("%s DerivationOutputs(%s) = %v, %v; want [%s]", name, drv, outs, err, top)
		}
	}
	// Without a readable database, Auto answers through the CLI.
	auto, _ := Open(filepath.Join(dir, "no-such-db.sqlite"))
	defer auto.Close()
	if auto.(*Auto).UsingDB() {
		t.Error("Auto claims a database that does not exist")
	}
	if fromAuto, err := auto.Closure(ctx, []string{top}); err != nil || !reflect.DeepEqual(fromAuto, fromDB) {
		t.Errorf("Auto without DB: %v", err)
	}
	missing := "/nix/store/00000000000000000000000000000000-missing"
	for name, s := range map[string]Store{"db": db, "cli": NewCLI()} {
		v, err := s.ValidPaths(ctx, []string{missing, top})
		if err != nil || len(v) != 1 || v[0] != top {
			t.Errorf("%s ValidPaths = %v, %v; want [%s]", name, v, err, top)
		}
	}
	_, err = db.PathInfos(ctx, []string{"/nix/store/00000000000000000000000000000000-missing"})
	if !errors.Is(err, ErrNotValid) {
		t.Errorf("missing path: %v, want ErrNotValid", err)
	}
	_, err = NewCLI().PathInfos(ctx, []string{"/nix/store/00000000000000000000000000000000-missing"})
	if !errors.Is(err, ErrNotValid) {
		t.Errorf("CLI missing path: %v, want ErrNotValid", err)
	}
}

func FuzzParsePathInfoJSON(f *testing.F) {
	f.Add(`[{"path":"` + pC + `","narHash":"sha256-EFUdrtf6Rn0LWIJufrmg8q99aT3jGfLvd1//zaJEufY=","narSize":120,"references":["` + pA + `"]}]`)
	f.Add(`{"` + pC + `":{"narHash":{"algorithm":"sha256","format":"base64","hash":"EFUdrtf6Rn0LWIJufrmg8q99aT3jGfLvd1//zaJEufY="},"narSize":1,"references":["l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a"]}}`)
	f.Add(`{"` + pA + `":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := ParsePathInfoJSON([]byte(s))
		if err != nil {
			return
		}
		for _, pi := range infos {
			if pi.NarHash.Algo == "" || !slices.IsSorted(pi.References) {
				t.Fatalf("accepted %+v", pi)
			}
		}
	})
}

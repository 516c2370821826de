package nar

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// Bytes Nix 2.8 wrote with `nix copy --to file://…` for a content-addressed
// derivation with one content-addressed input.
const (
	nixDepDoi = `{"dependentRealisations":{},"id":"sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d!out","outPath":"skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep","signatures":[]}`
	nixTopDoi = `{"dependentRealisations":{"sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d!out":"skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"},"id":"sha256:8c5b9fce25ba19afd81c4146915bbb40784dfb439336c7e3540078996d34df99!out","outPath":"dwqxrmji3mbkmd7wl7p9524paskwir3i-catop","signatures":[]}`
)

func TestRealisationJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Realisation
		want string
	}{
		{"no dependencies", Realisation{ID: "sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d!out", OutPath: "skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"}, nixDepDoi},
		{"a dependency", Realisation{
			ID: "sha256:8c5b9fce25ba19afd81c4146915bbb40784dfb439336c7e3540078996d34df99!out", OutPath: "dwqxrmji3mbkmd7wl7p9524paskwir3i-catop",
			DependentRealisations: map[string]string{"sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d!out": "skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"},
		}, nixTopDoi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.MarshalJSON()
			if err != nil || string(got) != tc.want {
				t.Fatalf("MarshalJSON = %s, %v\nwant %s", got, err, tc.want)
			}
			back, err := ParseRealisation(got)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := back.MarshalJSON()
			if !bytes.Equal(again, got) {
				t.Errorf("round trip: %s", again)
			}
			// The fingerprint is the JSON without "signatures".
			fp := string(tc.r.Fingerprint())
			if wantFP := tc.want[:len(tc.want)-len(`,"signatures":[]}`)] + "}"; fp != wantFP {
				t.Errorf("Fingerprint = %s\nwant %s", fp, wantFP)
			}
		})
	}
}

func TestRealisationSign(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	k := &SecretKey{Name: "test-1", Key: ed25519.NewKeyFromSeed(seed)}
	r, err := ParseRealisation([]byte(nixTopDoi))
	if err != nil {
		t.Fatal(err)
	}
	r.Sign(k)
	r.Sign(k) // replaces, does not add
	if len(r.Signatures) != 1 || !k.Public().Verify(r.Fingerprint(), r.Signatures[0]) {
		t.Fatalf("signatures %q do not verify", r.Signatures)
	}
	r.OutPath = "skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"
	if k.Public().Verify(r.Fingerprint(), r.Signatures[0]) {
		t.Error("the signature still verifies with another outPath")
	}
}

func TestParseRealisationRejects(t *testing.T) {
	for _, in := range []string{
		`{}`,
		`{"id":"sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d","outPath":"skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"}`,
		`{"id":"md5:70ceb9e3!out","outPath":"skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"}`,
		`{"id":"sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d!out","outPath":"/nix/store/skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep"}`,
		`{"id":"sha256:70ceb9e32acdefab7ea1df109641ba84cce318d97b37d418a45ed7c7ce78bc7d!out","outPath":"skdbl2iy8m3avccfh31rrhx83wvwvif0-cadep","dependentRealisations":{"x":"y"}}`,
		`[]`,
	} {
		if _, err := ParseRealisation([]byte(in)); err == nil {
			t.Errorf("ParseRealisation accepted %s", in)
		}
	}
}

func FuzzParseRealisation(f *testing.F) {
	f.Add([]byte(nixDepDoi))
	f.Add([]byte(nixTopDoi))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRealisation(b)
		if err != nil {
			return
		}
		out, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRealisation(out)
		if err != nil {
			t.Fatalf("ours does not parse back: %s: %v", out, err)
		}
		if out2, _ := r2.MarshalJSON(); !bytes.Equal(out, out2) {
			t.Fatalf("not stable: %s vs %s", out, out2)
		}
	})
}

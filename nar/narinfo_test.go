package nar

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The example from the binary-cache-format reference doc, verbatim.
const refNarInfo = `StorePath: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c
URL: nar/0zwbmn4pn57z1mz7v16lcs6gr2yq99nrjhx7h2d0cbdx1pbs69fx.nar.xz
Compression: xz
FileHash: sha256:0zwbmn4pn57z1mz7v16lcs6gr2yq99nrjhx7h2d0cbdx1pbs69fx
FileSize: 292
NarHash: sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7
NarSize: 928
References: l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b
Deriver: 9sgk06jv6kb6kacz77nc5wb91f6nsn1z-c.drv
Sig: test-1:5/XILsvK5AgCPFyRiitCbQPqdTGTvjRVC3owVHwUwIaEGFjuJCNYn6Q9OiwShKlpOGBew1jRDsvDr/YTMfLWCg==
`

func mustHash(t testing.TB, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNarInfoReferenceExample(t *testing.T) {
	ni, err := ParseNarInfo([]byte(refNarInfo))
	if err != nil {
		t.Fatal(err)
	}
	want := &NarInfo{
		StorePath:   "/nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c",
		URL:         "nar/0zwbmn4pn57z1mz7v16lcs6gr2yq99nrjhx7h2d0cbdx1pbs69fx.nar.xz",
		Compression: "xz",
		FileHash:    mustHash(t, "sha256:0zwbmn4pn57z1mz7v16lcs6gr2yq99nrjhx7h2d0cbdx1pbs69fx"),
		FileSize:    292,
		NarHash:     mustHash(t, "sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7"),
		NarSize:     928,
		References:  []string{"l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a", "yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b"},
		Deriver:     "9sgk06jv6kb6kacz77nc5wb91f6nsn1z-c.drv",
		Sigs:        []string{"test-1:5/XILsvK5AgCPFyRiitCbQPqdTGTvjRVC3owVHwUwIaEGFjuJCNYn6Q9OiwShKlpOGBew1jRDsvDr/YTMfLWCg=="},
	}
	if !reflect.DeepEqual(ni, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", ni, want)
	}
	out, err := want.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != refNarInfo {
		t.Fatalf("MarshalText:\n%s\nwant:\n%s", out, refNarInfo)
	}
	const fp = "1;/nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c;sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7;928;" +
		"/nix/store/l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a,/nix/store/yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b"
	if got := string(ni.Fingerprint()); got != fp {
		t.Errorf("Fingerprint = %s\nwant          %s", got, fp)
	}
}

func TestFingerprint(t *testing.T) {
	h := mustHash(t, "sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7")
	p := "/nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c"
	if got := string(Fingerprint(p, h, 5, nil)); got != "1;"+p+";"+h.String()+";5;" {
		t.Errorf("no references: %s", got)
	}
	refs := []string{"/nix/store/z0000000000000000000000000000000-z", "/nix/store/a0000000000000000000000000000000-a"}
	got := string(Fingerprint(p, h, 5, refs))
	if !strings.HasSuffix(got, ";5;/nix/store/a0000000000000000000000000000000-a,/nix/store/z0000000000000000000000000000000-z") {
		t.Errorf("references not sorted: %s", got)
	}
	if refs[0][11] != 'z' {
		t.Error("Fingerprint reordered the caller's slice")
	}
}

func TestNarInfoSignVerify(t *testing.T) {
	sk, err := ParseSecretKey(testSecretKey)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestKey(t, "other-1")
	ni, err := ParseNarInfo([]byte(refNarInfo))
	if err != nil {
		t.Fatal(err)
	}
	shared := ni.Sigs
	ni.Sign(sk) // replaces the doc's test-1 signature
	if len(ni.Sigs) != 1 || shared[0] == ni.Sigs[0] {
		t.Fatalf("Sign did not replace the same-name signature: %q (old %q)", ni.Sigs, shared)
	}
	ni.Sign(other)
	ni.Sign(sk)
	if len(ni.Sigs) != 2 || !strings.HasPrefix(ni.Sigs[0], "other-1:") || !strings.HasPrefix(ni.Sigs[1], "test-1:") {
		t.Fatalf("Sigs = %q", ni.Sigs)
	}
	pks := []*PublicKey{sk.Public(), other.Public()}
	if n := ni.Verify(pks); n != 2 {
		t.Errorf("Verify = %d, want 2", n)
	}
	if n := ni.Verify(pks[:1]); n != 1 {
		t.Errorf("Verify(one key) = %d, want 1", n)
	}
	ni.Sigs = append(ni.Sigs, ni.Sigs[1]) // a repeated signature counts once
	if n := ni.Verify(pks); n != 2 {
		t.Errorf("Verify with a duplicate = %d, want 2", n)
	}
	ni.NarSize++
	if n := ni.Verify(pks); n != 0 {
		t.Errorf("Verify after tampering = %d, want 0", n)
	}
}

func newTestKey(t testing.TB, name string) *SecretKey {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	return &SecretKey{Name: name, Key: ed25519.NewKeyFromSeed(seed[:])}
}

func TestParseNarInfoTolerant(t *testing.T) {
	base := "StorePath: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\nURL: nar/x.nar\nNarHash: sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\nNarSize: 928\n"
	ni, err := ParseNarInfo([]byte(base + "Foo: bar\nX-Future-Key: : :\n: empty key\nDeriver: unknown-deriver\nSystem: x86_64-linux\nReferences:  yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b  l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a \nNarSize: 0929\nCA: fixed:r:sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "bzip2" {
		t.Errorf("missing Compression should mean bzip2, got %q", ni.Compression)
	}
	if ni.Deriver != "" || ni.System != "x86_64-linux" || ni.NarSize != 929 {
		t.Errorf("parsed %+v", ni)
	}
	if want := []string{"yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b", "l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a"}; !reflect.DeepEqual(ni.References, want) {
		t.Errorf("References = %q", ni.References)
	}
	if !ni.FileHash.IsZero() || ni.FileSize != 0 {
		t.Errorf("FileHash/FileSize should be unset: %+v", ni)
	}
	out, err := ni.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	want := "StorePath: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\nURL: nar/x.nar\nCompression: bzip2\nNarHash: sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\nNarSize: 929\n" +
		"References: yzmrd0ld0k45khalds9ivfk2vr2cgxiz-b l0dcvncb4bsg6wsqnwcmk2xk00jh5bvj-a\nSystem: x86_64-linux\nCA: fixed:r:sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\n"
	if string(out) != want {
		t.Errorf("MarshalText:\n%s\nwant\n%s", out, want)
	}

	// Hashes in other encodings are accepted and re-rendered in nix32.
	ni, err = ParseNarInfo([]byte(strings.Replace(base, "sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7", ni.NarHash.SRI(), 1)))
	if err != nil || ni.NarHash.String() != "sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7" {
		t.Errorf("SRI NarHash: %v %v", ni, err)
	}
}

func TestParseNarInfoErrors(t *testing.T) {
	const (
		sp = "StorePath: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\n"
		u  = "URL: nar/x.nar\n"
		nh = "NarHash: sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\n"
		ns = "NarSize: 928\n"
	)
	tests := []struct{ name, in, want string }{
		{"empty", "", "StorePath missing"},
		{"no StorePath", u + nh + ns, "StorePath missing"},
		{"no URL", sp + nh + ns, "URL missing"},
		{"empty URL", sp + "URL: \n" + nh + ns, "URL missing"},
		{"no NarHash", sp + u + ns, "NarHash missing"},
		{"no NarSize", sp + u + nh, "NarSize missing or zero"},
		{"zero NarSize", sp + u + nh + "NarSize: 0\n", "NarSize missing or zero"},
		{"negative NarSize", sp + u + nh + "NarSize: -1\n", "line 4: NarSize"},
		{"plus NarSize", sp + u + nh + "NarSize: +1\n", "line 4: NarSize"},
		{"float NarSize", sp + u + nh + "NarSize: 1.5\n", "line 4: NarSize"},
		{"empty NarSize", sp + u + nh + "NarSize: \n", "line 4: NarSize"},
		{"huge NarSize", sp + u + nh + "NarSize: 99999999999999999999\n", "out of range"},
		{"bad FileSize", sp + u + nh + ns + "FileSize: x\n", "line 5: FileSize"},
		{"bad NarHash", sp + u + "NarHash: sha256:xyz\n" + ns, "line 3: NarHash"},
		{"unprefixed NarHash", sp + u + "NarHash: 1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\n" + ns, "line 3: NarHash"},
		{"bad FileHash", sp + u + nh + ns + "FileHash: md5:1\n", "line 5: FileHash"},
		{"bad StorePath", "StorePath: /nix/store/x\n" + u + nh + ns, "line 1: StorePath"},
		{"relative StorePath", "StorePath: hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\n" + u + nh + ns, "line 1: StorePath"},
		{"full path reference", sp + u + nh + ns + "References: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\n", "line 5: References"},
		{"bad reference", sp + u + nh + ns + "References: foo\n", "line 5: References"},
		{"two References", sp + u + nh + ns + "References: \nReferences: \n", "appears twice"},
		{"bad Deriver", sp + u + nh + ns + "Deriver: x.drv\n", "line 5: Deriver"},
		{"empty Deriver", sp + u + nh + ns + "Deriver: \n", "line 5: Deriver"},
		{"bad CA", sp + u + nh + ns + "CA: sha256:abc\n", "content address"},
		{"SRI CA", sp + u + nh + ns + "CA: fixed:r:sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=\n", "content address"},
		{"two CA", sp + u + nh + ns + "CA: fixed:r:sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\nCA: \n", "appears twice"},
		{"no space after colon", sp + u + nh + ns + "References:\n", "line 5: expected \"Key: value\""},
		{"no colon", sp + "garbage\n" + u + nh + ns, "line 2"},
		{"blank line", sp + "\n" + u + nh + ns, "line 2"},
		{"colon in key", sp + u + nh + ns + "Foo:bar: baz\n", "line 5"},
		{"truncated", sp + u + nh + strings.TrimSuffix(ns, "\n"), "missing final newline"},
		{"CRLF", strings.ReplaceAll(sp+u+nh+ns, "\n", "\r\n"), "line 1: StorePath"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ni, err := ParseNarInfo([]byte(tc.in))
			if err == nil {
				t.Fatalf("accepted: %+v", ni)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMarshalNarInfoErrors(t *testing.T) {
	good := func() *NarInfo {
		ni, err := ParseNarInfo([]byte(refNarInfo))
		if err != nil {
			t.Fatal(err)
		}
		return ni
	}
	tests := []struct {
		name string
		mod  func(*NarInfo)
		want string
	}{
		{"no StorePath", func(n *NarInfo) { n.StorePath = "" }, "StorePath"},
		{"base name StorePath", func(n *NarInfo) { n.StorePath = n.StorePath[len(StoreDir)+1:] }, "StorePath"},
		{"no URL", func(n *NarInfo) { n.URL = "" }, "URL missing"},
		{"no Compression", func(n *NarInfo) { n.Compression = "" }, "Compression missing"},
		{"no NarHash", func(n *NarInfo) { n.NarHash = Hash{} }, "NarHash missing"},
		{"short NarHash", func(n *NarInfo) { n.NarHash.Digest = n.NarHash.Digest[:5] }, "digest length"},
		{"no NarSize", func(n *NarInfo) { n.NarSize = 0 }, "NarSize"},
		{"negative FileSize", func(n *NarInfo) { n.FileSize = -1 }, "FileSize"},
		{"full path reference", func(n *NarInfo) { n.References[0] = StoreDir + "/" + n.References[0] }, "References"},
		{"reference with space", func(n *NarInfo) { n.References[0] += " x" }, "References"},
		{"full path deriver", func(n *NarInfo) { n.Deriver = StoreDir + "/" + n.Deriver }, "Deriver"},
		{"newline in URL", func(n *NarInfo) { n.URL += "\nSig: evil" }, "newline"},
		{"newline in Sig", func(n *NarInfo) { n.Sigs[0] += "\n" }, "newline"},
		{"bad CA", func(n *NarInfo) { n.CA = "nope" }, "content address"},
	}
	for _, tc := range tests {
		ni := good()
		tc.mod(ni)
		if out, err := ni.MarshalText(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: MarshalText = %q, %v; want error containing %q", tc.name, out, err, tc.want)
		}
	}
	// "References: " is written even when there are none.
	ni := good()
	ni.References, ni.Deriver, ni.Sigs, ni.FileHash, ni.FileSize = nil, "", nil, Hash{}, 0
	out, err := ni.MarshalText()
	if err != nil || !strings.Contains(string(out), "\nNarSize: 928\nReferences: \n") || strings.Contains(string(out), "File") {
		t.Errorf("minimal narinfo: %q %v", out, err)
	}
}

// TestNarInfoAgainstNix builds real store paths, signs and copies them with
// Nix, and checks that we reproduce Nix's narinfo files and signatures.
func TestNarInfoAgainstNix(t *testing.T) {
	requireNix(t)
	tmp := t.TempDir()
	nonceBytes := make([]byte, 8)
	rand.Read(nonceBytes)
	nonce := hex.EncodeToString(nonceBytes) // fresh paths: no signatures from earlier runs

	// c is a text path (CA, no deriver); b refers to a, c and itself.
	expr := `let
  nonce = "` + nonce + `";
  c = builtins.toFile "c-${nonce}" "text file ${nonce}\n";
  a = derivation { name = "a"; system = builtins.currentSystem; builder = "/bin/sh"; inherit nonce;
    args = [ "-c" "echo hello $nonce > $out" ]; };
  b = derivation { name = "b"; system = builtins.currentSystem; builder = "/bin/sh"; inherit nonce;
    args = [ "-c" "echo ${a} ${c} > $out; echo $out >> $out" ]; };
in b
`
	exprFile := filepath.Join(tmp, "test.nix")
	if err := os.WriteFile(exprFile, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{exprFile, "--no-out-link"}, nixOptions()...)
	top := strings.TrimSpace(string(runCmd(t, nil, "nix-build", args...)))
	closure := strings.Fields(string(runCmd(t, nil, "nix-store", "--query", "--requisites", top)))
	if len(closure) != 3 {
		t.Fatalf("closure of %s: %q, want 3 paths", top, closure)
	}
	t.Cleanup(func() {
		// Best effort: leave no test paths behind.
		drvs, _ := exec.Command("nix-store", append([]string{"--query", "--deriver"}, closure...)...).Output()
		del := append([]string{"--delete"}, closure...)
		for _, d := range strings.Fields(string(drvs)) {
			if strings.HasPrefix(d, StoreDir+"/") {
				del = append(del, d)
			}
		}
		_ = exec.Command("nix-store", del...).Run()
	})

	keyFile := filepath.Join(tmp, "test-1.sec")
	secret := nixCmd(t, nil, "key", "generate-secret", "--key-name", "test-1")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	sk, err := LoadSecretKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	nixPub := strings.TrimSpace(string(nixCmd(t, secret, "key", "convert-secret-to-public")))
	if sk.Public().String() != nixPub {
		t.Errorf("Public() = %s, nix key convert-secret-to-public says %s", sk.Public(), nixPub)
	}
	pub, err := ParsePublicKey(nixPub)
	if err != nil {
		t.Fatal(err)
	}

	nixCmd(t, nil, "store", "sign", "--key-file", keyFile, "--recursive", top)
	cache := filepath.Join(tmp, "cache")
	nixCmd(t, nil, "copy", "--to", "file://"+cache+"?compression=xz", top)

	var pathInfo []struct { // Nix 2.8's layout
		Path    string `json:"path"`
		NarHash string `json:"narHash"` // SRI
		NarSize int64  `json:"narSize"`
	}
	if err := json.Unmarshal(nixCmd(t, nil, "path-info", "--json", "--recursive", top), &pathInfo); err != nil {
		t.Fatal(err)
	}
	if len(pathInfo) != 3 {
		t.Fatalf("nix path-info returned %d paths", len(pathInfo))
	}

	sawDeriver, sawCA, sawRefs := false, false, false
	for _, pi := range pathInfo {
		sp, err := ParseStorePath(pi.Path)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(cache, sp.Hash+".narinfo"))
		if err != nil {
			t.Fatal(err)
		}
		ni, err := ParseNarInfo(raw)
		if err != nil {
			t.Fatalf("parsing Nix's narinfo for %s: %v\n%s", pi.Path, err, raw)
		}

		// Our rendering of what we parsed is Nix's file, byte for byte.
		out, err := ni.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, raw) {
			t.Errorf("MarshalText differs from Nix's narinfo for %s:\nours:\n%s\nnix:\n%s", pi.Path, out, raw)
		}

		// Our signature equals Nix's (ed25519 is deterministic).
		if len(ni.Sigs) != 1 {
			t.Fatalf("%s: Nix wrote %d signatures, want 1", pi.Path, len(ni.Sigs))
		}
		nixSig := ni.Sigs[0]
		ours := *ni
		ours.Sigs = nil
		ours.Sign(sk)
		if ours.Sigs[0] != nixSig {
			t.Errorf("%s: our Sig %s, Nix's %s\nfingerprint %s", pi.Path, ours.Sigs[0], nixSig, ni.Fingerprint())
		}
		if n := ni.Verify([]*PublicKey{pub}); n != 1 {
			t.Errorf("%s: Verify = %d, want 1", pi.Path, n)
		}

		// The NAR is ours too: hash, size, and the compressed file's hash.
		var nar bytes.Buffer
		if err := DumpPath(&nar, pi.Path); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(nar.Bytes())
		if h := NewSHA256(sum[:]); !h.Equal(ni.NarHash) || h.SRI() != pi.NarHash || int64(nar.Len()) != ni.NarSize || pi.NarSize != ni.NarSize {
			t.Errorf("%s: our NAR %s/%d, narinfo %s/%d, path-info %s/%d", pi.Path, h, nar.Len(), ni.NarHash, ni.NarSize, pi.NarHash, pi.NarSize)
		}
		xz, err := os.ReadFile(filepath.Join(cache, ni.URL))
		if err != nil {
			t.Fatal(err)
		}
		fsum := sha256.Sum256(xz)
		if h := NewSHA256(fsum[:]); !h.Equal(ni.FileHash) || int64(len(xz)) != ni.FileSize || ni.URL != "nar/"+NixBase32.EncodeToString(fsum[:])+".nar.xz" {
			t.Errorf("%s: FileHash/FileSize/URL do not describe %s", pi.Path, ni.URL)
		}

		sawDeriver = sawDeriver || ni.Deriver != ""
		sawCA = sawCA || (ni.CA != "" && ni.Deriver == "")
		sawRefs = sawRefs || len(ni.References) == 3
	}
	if !sawDeriver || !sawCA || !sawRefs {
		t.Errorf("test did not cover deriver %v, CA without deriver %v, self-reference chain %v", sawDeriver, sawCA, sawRefs)
	}
}

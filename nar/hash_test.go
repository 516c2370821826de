package nar

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestParseHash(t *testing.T) {
	abc := sha256.Sum256([]byte("abc"))
	const (
		nix32 = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
		sri   = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
		hexs  = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	)
	good := []struct {
		in   string
		algo string
		hex  string
	}{
		{nix32, "sha256", hex.EncodeToString(abc[:])},
		{sri, "sha256", hex.EncodeToString(abc[:])},
		{hexs, "sha256", hex.EncodeToString(abc[:])},
		{"sha256:" + strings.ToUpper(hexs[7:]), "sha256", hex.EncodeToString(abc[:])},
		{"sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", "sha256", hex.EncodeToString(abc[:])},
		{"sha1:kpcd173cq987hw957sx6m0868wv3x6d9", "sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"sha1:a9993e364706816aba3e25717850c26c9cd0d89d", "sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"md5:3jgzhjhz9zjvbb0kyj7jc500ch", "md5", "900150983cd24fb0d6963f7d28e17f72"},
		{"sha512:2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1ai7xac99vxfc4ii84hawjbk876blyk1jfhkbbyx", "sha512",
			"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
		{"sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==", "sha512",
			"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
	}
	for _, tc := range good {
		h, err := ParseHash(tc.in)
		if err != nil {
			t.Errorf("ParseHash(%q): %v", tc.in, err)
			continue
		}
		if h.Algo != tc.algo || h.Hex() != tc.hex {
			t.Errorf("ParseHash(%q) = %s %s, want %s %s", tc.in, h.Algo, h.Hex(), tc.algo, tc.hex)
		}
		// Every form re-parses from both renderings.
		for _, s := range []string{h.String(), h.SRI()} {
			if h2, err := ParseHash(s); err != nil || !h2.Equal(h) {
				t.Errorf("ParseHash(%q) round trip via %q: %v", tc.in, s, err)
			}
		}
	}

	h := NewSHA256(abc[:])
	if h.String() != nix32 || h.SRI() != sri {
		t.Errorf("NewSHA256: String %q SRI %q", h.String(), h.SRI())
	}

	bad := []string{
		"",
		"sha256",
		"1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",                    // no prefix
		"sha257:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",             // unknown algo
		"SHA256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",             // Nix is case-sensitive
		"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5",              // 51 chars
		"sha256:2b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",             // overflow bits
		"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e",             // 'e' not nix32
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag", // bad hex
		"sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",                      // SRI missing padding
		"sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", // SRI must be base64
		"sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAF===",                     // padding in the wrong place
		"sha256: 1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		"sha1:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", // sha256 length
	}
	for _, s := range bad {
		if h, err := ParseHash(s); err == nil {
			t.Errorf("ParseHash(%q) = %v, want error", s, h)
		}
	}
}

func TestHashZeroAndEqual(t *testing.T) {
	var z Hash
	if !z.IsZero() || z.String() != "" || z.SRI() != "" {
		t.Errorf("zero Hash: IsZero %v String %q SRI %q", z.IsZero(), z.String(), z.SRI())
	}
	a := NewSHA256(make([]byte, 32))
	b := Hash{Algo: "sha256", Digest: make([]byte, 32)}
	c := Hash{Algo: "sha512", Digest: make([]byte, 32)}
	if !a.Equal(b) || a.Equal(c) || a.Equal(z) {
		t.Error("Equal is wrong")
	}
	d := make([]byte, 32)
	e := NewSHA256(d)
	d[0] = 1
	if e.Digest[0] != 0 {
		t.Error("NewSHA256 must copy the digest")
	}
}

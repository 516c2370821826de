package nar

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzParseNarInfo(f *testing.F) {
	f.Add([]byte(refNarInfo))
	f.Add([]byte("StorePath: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\nURL: u\nNarHash: sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=\nNarSize: 1\nReferences: \nDeriver: unknown-deriver\nSystem: s\nSig: \nCA: text:sha256:1lmzafhhb17fizrqjlb7grclpwl525r9hfsndf5y6jsr4fmv9gb7\n"))
	f.Add([]byte("StorePath: /nix/store/hrffffd1j5kcpk28vhfqvfjl4b5lg2g0-c\nURL: u\nNarHash: md5:3jgzhjhz9zjvbb0kyj7jc500ch\nNarSize: 01\nFileSize: 0\nFileHash: sha1:a9993e364706816aba3e25717850c26c9cd0d89d\nX: y\n"))
	f.Add([]byte("StorePath: x\n"))
	f.Add([]byte(":\n: \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ni, err := ParseNarInfo(b)
		if err != nil {
			return
		}
		out, err := ni.MarshalText()
		if err != nil {
			t.Fatalf("parsed but cannot marshal: %v\ninput %q", err, b)
		}
		ni2, err := ParseNarInfo(out)
		if err != nil {
			t.Fatalf("cannot re-parse our output: %v\n%q", err, out)
		}
		if !reflect.DeepEqual(ni, ni2) {
			t.Fatalf("round trip changed the value:\n%+v\n%+v", ni, ni2)
		}
		out2, err := ni2.MarshalText()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("second marshal differs: %v\n%q\n%q", err, out, out2)
		}
	})
}

func FuzzNixBase32(f *testing.F) {
	f.Add([]byte{}, "")
	f.Add([]byte{0xff}, "7z")
	f.Add(make([]byte, 32), "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s")
	f.Add([]byte("abc"), "2000000000000000000000000000000000000000000000000000")
	f.Add([]byte{1, 2, 3, 4, 5}, "0e0u0t0o")
	f.Fuzz(func(t *testing.T, data []byte, s string) {
		enc := NixBase32.EncodeToString(data)
		if len(enc) != NixBase32.EncodedLen(len(data)) {
			t.Fatalf("EncodedLen(%d) = %d, encoded %d", len(data), NixBase32.EncodedLen(len(data)), len(enc))
		}
		dec, err := NixBase32.DecodeString(enc)
		if err != nil || !bytes.Equal(dec, data) {
			t.Fatalf("decode(encode(%x)) = %x, %v", data, dec, err)
		}
		// Decoding is strict, so any accepted string is canonical.
		if dec, err := NixBase32.DecodeString(s); err == nil {
			if again := NixBase32.EncodeToString(dec); again != s {
				t.Fatalf("DecodeString(%q) accepted a non-canonical string (re-encodes to %q)", s, again)
			}
		}
	})
}

func FuzzParseStorePath(f *testing.F) {
	f.Add("/nix/store/xmy64pbaynfirn4h6wwjanqsvy3129ps-b")
	f.Add("/nix/store/xmy64pbaynfirn4h6wwjanqsvy3129ps-.b")
	f.Add("/nix/store/xmy64pbaynfirn4h6wwjanqsvy3129ps-b/..")
	f.Add("/nix/store/../xmy64pbaynfirn4h6wwjanqsvy3129ps-b")
	f.Add("/nix/store/xmy64pbaynfirn4h6wwjanqsvy3129ps")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseStorePath(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("ParseStorePath(%q).String() = %q", s, p.String())
		}
		if q, err := ParseBaseName(p.Base()); err != nil || q != p {
			t.Fatalf("ParseBaseName(%q) = %+v, %v", p.Base(), q, err)
		}
		if len(p.Hash) != HashLen || len(p.Name) == 0 || len(p.Name) > MaxNameLen {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func FuzzParseHash(f *testing.F) {
	f.Add("sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s")
	f.Add("sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
	f.Add("sha1:a9993e364706816aba3e25717850c26c9cd0d89d")
	f.Add("md5:3jgzhjhz9zjvbb0kyj7jc500ch")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		if len(h.Digest) != hashSizes[h.Algo] {
			t.Fatalf("ParseHash(%q) digest length %d", s, len(h.Digest))
		}
		for _, r := range []string{h.String(), h.SRI(), h.Algo + ":" + h.Hex()} {
			if h2, err := ParseHash(r); err != nil || !h2.Equal(h) {
				t.Fatalf("ParseHash(%q) -> %q does not round-trip: %v", s, r, err)
			}
		}
	})
}

// FuzzParser feeds arbitrary bytes to the NAR parser: it must never
// panic, and whatever it accepts must be a NAR that Writer writes the
// same way, with every narOffset inside it.
func FuzzParser(f *testing.F) {
	f.Add([]byte{})
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteHeader(&Header{Type: TypeDirectory})
	w.WriteHeader(&Header{Path: "a", Type: TypeRegular, Size: 3, Executable: true})
	w.Write([]byte("abc"))
	w.WriteHeader(&Header{Path: "b", Type: TypeDirectory})
	w.WriteHeader(&Header{Path: "b/c", Type: TypeSymlink, LinkTarget: "../a"})
	w.WriteHeader(&Header{Path: "d", Type: TypeRegular})
	w.Close()
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseAll(data, 0)
		l2, err2 := parseAll(data, 5)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("chunking changes the verdict: %v / %v", err, err2)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(l, l2) {
			t.Fatal("chunking changes the listing")
		}
		// Rewrite the archive from the listing and the contents.
		var out bytes.Buffer
		nw := NewWriter(&out)
		var emit func(path string, n *ListingNode)
		emit = func(path string, n *ListingNode) {
			h := &Header{Path: path, Type: n.Type, Executable: n.Executable, Size: n.Size, LinkTarget: n.Target}
			if err := nw.WriteHeader(h); err != nil {
				t.Fatalf("writer refuses what the parser accepted: %v", err)
			}
			if n.Type == TypeRegular {
				if n.NarOffset+n.Size > int64(len(data)) {
					t.Fatalf("narOffset beyond the data")
				}
				nw.Write(data[n.NarOffset : n.NarOffset+n.Size])
			}
			for _, name := range sortedNames(n.Entries) {
				p := name
				if path != "" {
					p = path + "/" + name
				}
				emit(p, n.Entries[name])
			}
		}
		emit("", l.Root)
		if err := nw.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("accepted a NAR that is not canonical")
		}
	})
}

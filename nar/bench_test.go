package nar

import (
	"crypto/sha256"
	"io"
	"testing"
)

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// benchTree returns a fixed tree (one 8 MiB file, many small ones) and the
// size of its NAR.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	root := b.TempDir() + "/tree"
	makeTree(b, root, 8<<20)
	var n countWriter
	if err := DumpPath(&n, root); err != nil {
		b.Fatal(err)
	}
	return root, int64(n)
}

func BenchmarkDumpPath(b *testing.B) {
	root, size := benchTree(b)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if err := DumpPath(io.Discard, root); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSHA256NAR(b *testing.B) {
	root, size := benchTree(b)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		h := sha256.New()
		if err := DumpPath(h, root); err != nil {
			b.Fatal(err)
		}
		h.Sum(nil)
	}
}

func BenchmarkNixBase32(b *testing.B) {
	digest := sha256.Sum256([]byte("abc"))
	enc := make([]byte, NixBase32.EncodedLen(len(digest)))
	dec := make([]byte, len(digest))
	b.SetBytes(int64(len(digest)))
	for b.Loop() {
		NixBase32.Encode(enc, digest[:])
		if _, err := NixBase32.Decode(dec, enc); err != nil {
			b.Fatal(err)
		}
	}
}

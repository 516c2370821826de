package nar

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Hash is a digest tagged with its algorithm name as Nix spells it.
// The zero value means "no hash".
type Hash struct {
	Algo   string // "sha256", "sha1", "sha512" or "md5"
	Digest []byte
}

var hashSizes = map[string]int{
	"md5":    16,
	"sha1":   20,
	"sha256": 32,
	"sha512": 64,
}

// NewSHA256 wraps a 32-byte SHA-256 digest.
func NewSHA256(digest []byte) Hash {
	return Hash{Algo: "sha256", Digest: bytes.Clone(digest)}
}

// ParseHash parses "algo:<nix32|hex|base64>" or SRI "algo-<base64>",
// choosing the encoding by length as Nix does.
func ParseHash(s string) (Hash, error) {
	algo, rest, sri := "", "", false
	if i := strings.IndexAny(s, ":-"); i >= 0 {
		algo, rest, sri = s[:i], s[i+1:], s[i] == '-'
	}
	size, ok := hashSizes[algo]
	if !ok {
		if algo == "" {
			return Hash{}, fmt.Errorf("hash %q: missing algorithm prefix such as \"sha256:\"", s)
		}
		return Hash{}, fmt.Errorf("hash %q: unknown algorithm %q", s, algo)
	}
	var (
		digest []byte
		err    error
	)
	b64 := base64.StdEncoding
	switch {
	case sri:
		if len(rest) != b64.EncodedLen(size) {
			return Hash{}, fmt.Errorf("hash %q: SRI %s hash must be %d base64 characters, got %d", s, algo, b64.EncodedLen(size), len(rest))
		}
		digest, err = b64.DecodeString(rest)
	case len(rest) == hex.EncodedLen(size):
		digest, err = hex.DecodeString(rest)
	case len(rest) == NixBase32.EncodedLen(size):
		digest, err = NixBase32.DecodeString(rest)
	case len(rest) == b64.EncodedLen(size):
		digest, err = b64.DecodeString(rest)
	default:
		return Hash{}, fmt.Errorf("hash %q: wrong length %d for a %s hash", s, len(rest), algo)
	}
	if err != nil {
		return Hash{}, fmt.Errorf("hash %q: %v", s, err)
	}
	if len(digest) != size {
		// base64 with misplaced padding can decode short.
		return Hash{}, fmt.Errorf("hash %q: decodes to %d bytes, want %d", s, len(digest), size)
	}
	return Hash{Algo: algo, Digest: digest}, nil
}

// IsZero reports whether h is the zero value ("no hash").
func (h Hash) IsZero() bool { return h.Algo == "" && len(h.Digest) == 0 }

// String returns "algo:" + nix-base32, the form narinfo files use, or "" for
// the zero Hash.
func (h Hash) String() string {
	if h.IsZero() {
		return ""
	}
	return h.Algo + ":" + NixBase32.EncodeToString(h.Digest)
}

// SRI returns "algo-" + standard base64, as `nix hash path` prints.
func (h Hash) SRI() string {
	if h.IsZero() {
		return ""
	}
	return h.Algo + "-" + base64.StdEncoding.EncodeToString(h.Digest)
}

// Hex returns the lower-case hex digest without a prefix.
func (h Hash) Hex() string { return hex.EncodeToString(h.Digest) }

// Equal reports whether h and o have the same algorithm and digest.
func (h Hash) Equal(o Hash) bool {
	return h.Algo == o.Algo && bytes.Equal(h.Digest, o.Digest)
}

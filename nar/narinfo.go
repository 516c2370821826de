package nar

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// NarInfo is the content of a <hashpart>.narinfo file.
type NarInfo struct {
	StorePath   string   // full path
	URL         string   // relative to the cache root, e.g. "nar/<FileHash>.nar.xz"
	Compression string   // "xz", "zstd", "none", "bzip2" ...
	FileHash    Hash     // zero value = omitted
	FileSize    int64    // 0 = omitted
	NarHash     Hash     // sha256 for anything Nix will sign or verify
	NarSize     int64    // must be > 0
	References  []string // base names, written in the given order (callers sort)
	Deriver     string   // base name, "" = omitted
	System      string   // obsolete; "" = omitted, kept so files round-trip
	Sigs        []string // written in the given order; Nix writes them sorted
	CA          string   // content address, "" = omitted
}

// ParseNarInfo parses the text of a narinfo file.
func ParseNarInfo(b []byte) (*NarInfo, error) {
	n := new(NarInfo)
	if err := n.UnmarshalText(b); err != nil {
		return nil, err
	}
	return n, nil
}

func checkOneLine(field, v string) error {
	if strings.IndexByte(v, '\n') >= 0 {
		return fmt.Errorf("nar: narinfo %s contains a newline", field)
	}
	return nil
}

// MarshalText writes the narinfo exactly as Nix does.
func (n *NarInfo) MarshalText() ([]byte, error) {
	if _, err := ParseStorePath(n.StorePath); err != nil {
		return nil, fmt.Errorf("nar: narinfo StorePath: %w", err)
	}
	switch {
	case n.URL == "":
		return nil, errors.New("nar: narinfo URL missing")
	case n.Compression == "":
		// A reader would assume bzip2.
		return nil, errors.New("nar: narinfo Compression missing (use \"none\" for uncompressed)")
	case n.NarHash.IsZero():
		return nil, errors.New("nar: narinfo NarHash missing")
	case n.NarSize <= 0:
		return nil, fmt.Errorf("nar: narinfo NarSize must be > 0, got %d", n.NarSize)
	case n.FileSize < 0:
		return nil, fmt.Errorf("nar: narinfo FileSize is negative: %d", n.FileSize)
	}
	for _, h := range []Hash{n.FileHash, n.NarHash} {
		if !h.IsZero() {
			if size, ok := hashSizes[h.Algo]; !ok || len(h.Digest) != size {
				return nil, fmt.Errorf("nar: narinfo hash %s has a bad algorithm or digest length", h.Algo)
			}
		}
	}
	for _, r := range n.References {
		if _, err := ParseBaseName(r); err != nil {
			return nil, fmt.Errorf("nar: narinfo References: %w", err)
		}
	}
	if n.Deriver != "" {
		if _, err := ParseBaseName(n.Deriver); err != nil {
			return nil, fmt.Errorf("nar: narinfo Deriver: %w", err)
		}
	}
	if n.CA != "" {
		if err := checkCA(n.CA); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct{ name, v string }{
		{"URL", n.URL}, {"Compression", n.Compression}, {"System", n.System},
	} {
		if err := checkOneLine(f.name, f.v); err != nil {
			return nil, err
		}
	}
	for _, s := range n.Sigs {
		if err := checkOneLine("Sig", s); err != nil {
			return nil, err
		}
	}

	var b bytes.Buffer
	line := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	line("StorePath", n.StorePath)
	line("URL", n.URL)
	line("Compression", n.Compression)
	if !n.FileHash.IsZero() {
		line("FileHash", n.FileHash.String())
	}
	if n.FileSize != 0 {
		line("FileSize", strconv.FormatInt(n.FileSize, 10))
	}
	line("NarHash", n.NarHash.String())
	line("NarSize", strconv.FormatInt(n.NarSize, 10))
	line("References", strings.Join(n.References, " "))
	if n.Deriver != "" {
		line("Deriver", n.Deriver)
	}
	if n.System != "" {
		line("System", n.System)
	}
	for _, s := range n.Sigs {
		line("Sig", s)
	}
	if n.CA != "" {
		line("CA", n.CA)
	}
	return b.Bytes(), nil
}

// UnmarshalText parses a narinfo like Nix does: unknown keys are ignored,
// StorePath, URL, NarHash and a non-zero NarSize are required, and every
// line, the last included, must end in a newline.
func (n *NarInfo) UnmarshalText(b []byte) error {
	var (
		out                                  NarInfo
		haveRefs, haveCA, havePath, haveHash bool
	)
	s := string(b)
	for lineNo := 1; s != ""; lineNo++ {
		line, rest, ok := strings.Cut(s, "\n")
		if !ok {
			return fmt.Errorf("nar: narinfo line %d: missing final newline (truncated file?)", lineNo)
		}
		s = rest
		key, v, ok := strings.Cut(line, ": ")
		if !ok || strings.IndexByte(key, ':') >= 0 {
			return fmt.Errorf("nar: narinfo line %d: expected \"Key: value\"", lineNo)
		}
		fail := func(err error) error {
			return fmt.Errorf("nar: narinfo line %d: %s: %w", lineNo, key, err)
		}
		var err error
		switch key {
		case "StorePath":
			if _, err = ParseStorePath(v); err != nil {
				return fail(err)
			}
			out.StorePath, havePath = v, true
		case "URL":
			out.URL = v
		case "Compression":
			out.Compression = v
		case "FileHash":
			if out.FileHash, err = ParseHash(v); err != nil {
				return fail(err)
			}
		case "FileSize":
			if out.FileSize, err = parseSize(v); err != nil {
				return fail(err)
			}
		case "NarHash":
			if out.NarHash, err = ParseHash(v); err != nil {
				return fail(err)
			}
			haveHash = true
		case "NarSize":
			if out.NarSize, err = parseSize(v); err != nil {
				return fail(err)
			}
		case "References":
			if haveRefs {
				return fail(errors.New("appears twice"))
			}
			haveRefs = true
			for _, r := range strings.Split(v, " ") {
				if r == "" {
					continue // Nix's tokenizer skips empty tokens.
				}
				if _, err = ParseBaseName(r); err != nil {
					return fail(err)
				}
				out.References = append(out.References, r)
			}
		case "Deriver":
			out.Deriver = ""
			if v != "unknown-deriver" {
				if _, err = ParseBaseName(v); err != nil {
					return fail(err)
				}
				out.Deriver = v
			}
		case "System":
			out.System = v
		case "Sig":
			out.Sigs = append(out.Sigs, v)
		case "CA":
			if haveCA {
				return fail(errors.New("appears twice"))
			}
			haveCA = true
			if v != "" {
				if err = checkCA(v); err != nil {
					return fail(err)
				}
			}
			out.CA = v
		}
	}
	if out.Compression == "" {
		out.Compression = "bzip2" // Nix's default for old caches
	}
	switch {
	case !havePath:
		return errors.New("nar: narinfo StorePath missing")
	case !haveHash:
		return errors.New("nar: narinfo NarHash missing")
	case out.URL == "":
		return errors.New("nar: narinfo URL missing")
	case out.NarSize == 0:
		return errors.New("nar: narinfo NarSize missing or zero")
	}
	*n = out
	return nil
}

// parseSize accepts plain decimal digits only, no sign.
func parseSize(v string) (int64, error) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a non-negative integer", v)
	}
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", v)
	}
	return x, nil
}

// checkCA accepts the forms Nix renders: "text:sha256:…", "fixed:r:algo:…"
// and "fixed:algo:…".
func checkCA(ca string) error {
	var h string
	switch {
	case strings.HasPrefix(ca, "text:"):
		h = ca[len("text:"):]
		if !strings.HasPrefix(h, "sha256:") {
			return fmt.Errorf("nar: content address %q: text hashes must be sha256", ca)
		}
	case strings.HasPrefix(ca, "fixed:r:"):
		h = ca[len("fixed:r:"):]
	case strings.HasPrefix(ca, "fixed:"):
		h = ca[len("fixed:"):]
	default:
		return fmt.Errorf("nar: content address %q: must start with \"text:\" or \"fixed:\"", ca)
	}
	if _, err := ParseHash(h); err != nil || !strings.Contains(h, ":") {
		return fmt.Errorf("nar: content address %q: bad hash", ca)
	}
	return nil
}

// Fingerprint returns the bytes Nix signs for a path: storePath and
// references are full store paths; references are sorted here.
func Fingerprint(storePath string, narHash Hash, narSize int64, references []string) []byte {
	refs := slices.Clone(references)
	slices.Sort(refs)
	var b bytes.Buffer
	b.WriteString("1;")
	b.WriteString(storePath)
	b.WriteByte(';')
	b.WriteString(narHash.String())
	b.WriteByte(';')
	b.WriteString(strconv.FormatInt(narSize, 10))
	b.WriteByte(';')
	b.WriteString(strings.Join(refs, ","))
	return b.Bytes()
}

// Fingerprint returns the fingerprint of n, whose References are base names.
func (n *NarInfo) Fingerprint() []byte {
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = StoreDir + "/" + r
	}
	return Fingerprint(n.StorePath, n.NarHash, n.NarSize, refs)
}

// Sign adds k's signature, replacing any earlier one by the same key name.
func (n *NarInfo) Sign(k *SecretKey) {
	prefix := k.Name + ":"
	// A new slice, so that callers sharing the old one see no change.
	sigs := make([]string, 0, len(n.Sigs)+1)
	for _, s := range n.Sigs {
		if !strings.HasPrefix(s, prefix) {
			sigs = append(sigs, s)
		}
	}
	n.Sigs = append(sigs, k.Sign(n.Fingerprint()))
}

// Verify returns the number of distinct signatures in n that one of keys
// verifies.
func (n *NarInfo) Verify(keys []*PublicKey) int {
	fp := n.Fingerprint()
	good := 0
	for i, s := range n.Sigs {
		if slices.Contains(n.Sigs[:i], s) {
			continue
		}
		for _, k := range keys {
			if k != nil && k.Verify(fp, s) {
				good++
				break
			}
		}
	}
	return good
}

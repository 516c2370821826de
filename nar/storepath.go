package nar

import (
	"fmt"
	"strings"
)

// StoreDir is the only store directory nixpushd supports.
const StoreDir = "/nix/store"

const (
	// HashLen is the length of a store path's hash part (160 bits in nix32).
	HashLen = 32
	// MaxNameLen is Nix's limit on the name part, chosen so that a base
	// name fits in 255 bytes.
	MaxNameLen = 211
)

// StorePath is a parsed store path "/nix/store/<Hash>-<Name>".
type StorePath struct {
	Hash string // 32 nix-base32 characters
	Name string
}

// ParseStorePath parses a full, canonical store path. It rejects relative
// paths, other store directories, trailing slashes and paths inside a store
// path.
func ParseStorePath(p string) (StorePath, error) {
	base, ok := strings.CutPrefix(p, StoreDir+"/")
	if !ok {
		return StorePath{}, fmt.Errorf("store path %q: not in %s/", p, StoreDir)
	}
	if i := strings.IndexByte(base, '/'); i >= 0 {
		if i == len(base)-1 {
			return StorePath{}, fmt.Errorf("store path %q: trailing slash", p)
		}
		for _, c := range strings.Split(base, "/") {
			if c == "" || c == "." || c == ".." {
				return StorePath{}, fmt.Errorf("store path %q: not canonical (has an empty, '.' or '..' component)", p)
			}
		}
		return StorePath{}, fmt.Errorf("store path %q: is a path inside a store path, not a store path", p)
	}
	sp, err := parseBase(base)
	if err != nil {
		return StorePath{}, fmt.Errorf("store path %q: %s", p, err)
	}
	return sp, nil
}

// ParseBaseName parses "<hash>-<name>", the form narinfo references use.
func ParseBaseName(b string) (StorePath, error) {
	sp, err := parseBase(b)
	if err != nil {
		return StorePath{}, fmt.Errorf("store path base name %q: %s", b, err)
	}
	return sp, nil
}

// parseBase returns errors without the input; callers add it.
func parseBase(b string) (StorePath, error) {
	if strings.IndexByte(b, '/') >= 0 {
		return StorePath{}, fmt.Errorf("contains '/'")
	}
	if len(b) < HashLen+2 {
		return StorePath{}, fmt.Errorf("too short: need %d hash characters, '-' and a name", HashLen)
	}
	hash, name := b[:HashLen], b[HashLen+1:]
	for i := 0; i < len(hash); i++ {
		if NixBase32.decodeMap[hash[i]] == invalidDigit {
			return StorePath{}, fmt.Errorf("hash part has illegal character %q at offset %d (nix-base32 excludes e, o, u, t)", hash[i], i)
		}
	}
	if b[HashLen] != '-' {
		return StorePath{}, fmt.Errorf("expected '-' after the %d-character hash, found %q", HashLen, b[HashLen])
	}
	if err := checkName(name); err != nil {
		return StorePath{}, err
	}
	return StorePath{Hash: hash, Name: name}, nil
}

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("name is %d bytes long, the limit is %d", len(name), MaxNameLen)
	}
	// As Nix's checkName (src/libstore/path.cc, since NixOS/nix#9867):
	// leading dots are valid, but the first '-'-separated component must
	// not be "." or "..".
	for _, dots := range []string{"..", "."} {
		if rest, ok := strings.CutPrefix(name, dots); ok && (rest == "" || rest[0] == '-') {
			if rest == "" {
				return fmt.Errorf("name must not be %q", dots)
			}
			return fmt.Errorf("name must not start with %q (its first dash-separated component must not be %q)", dots+"-", dots)
		}
	}
	for i := 0; i < len(name); i++ {
		if !validNameChar(name[i]) {
			return fmt.Errorf("name has illegal character %q at offset %d (allowed: A-Z a-z 0-9 + - . _ ? =)", name[i], i)
		}
	}
	return nil
}

func validNameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("+-._?=", c) >= 0
}

// String returns the full path.
func (p StorePath) String() string { return StoreDir + "/" + p.Base() }

// Base returns "<hash>-<name>".
func (p StorePath) Base() string { return p.Hash + "-" + p.Name }

package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// presentSigner makes "already cached" mean "cached and signed by key":
// for each path whose narinfo lacks a valid signature by key (unsigned,
// signed by others only, or by another key of key's name), it adds key's
// signature, keeping the others and every other line as it is. A
// narinfo that does not describe the local path (another NarHash,
// NarSize or References: signing it would vouch for content this machine
// does not have) is left alone and reported. Narinfos found signed, and
// those the Pusher wrote with key, are remembered in known: each is read
// at most once per Pusher. A new Pusher (each `nixpushd push`) reads
// every cached narinfo of the closure once: a listing carries no
// signatures, and a member signed by another key must not pass for ours.
type presentSigner struct {
	t     cache.Target
	key   *nar.SecretKey
	jobs  int // reads and writes at once
	log   *slog.Logger
	known *signedSet
	// memo and listed: a narinfo whose ETag in a fresh listing is a text
	// remembered signed (by an earlier run) is not read. A nil memo
	// remembers nothing.
	memo   *signMemo
	listed func(key string) (etag string, ok bool)
	// session holds the cache lock for writing narinfos (a rewrite must
	// not race a gc sweep); release ends it.
	session func(context.Context) (release func(), err error)
}

// signedSet is the store paths whose cached narinfo is known to carry
// the Pusher's key's valid signature. The zero value is empty.
type signedSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *signedSet) add(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]bool{}
	}
	s.m[path] = true
}

// unknown returns the paths not in s.
func (s *signedSet) unknown(paths []*store.PathInfo) []*store.PathInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.PathInfo
	for _, pi := range paths {
		if !s.m[pi.Path] {
			out = append(out, pi)
		}
	}
	return out
}

// sign signs the narinfos of present that need it, returning the paths
// signed and the reasons of those that could not be.
func (s *presentSigner) sign(ctx context.Context, present []*store.PathInfo) (signed []string, notSigned map[string]string, err error) {
	todo := s.known.unknown(present)
	// Without a memo no listed ETag can spare a read: skip the per-path
	// key and listing lookups (a 100,000-path push into file://).
	if s.memo != nil && s.listed != nil {
		todo = slices.DeleteFunc(todo, func(pi *store.PathInfo) bool {
			key, err := narinfoKey(pi.Path)
			if err != nil {
				return false
			}
			if tag, ok := s.listed(key); ok && s.memo.signed(key, tag) {
				s.known.add(pi.Path)
				return true
			}
			return false
		})
	}
	if len(todo) == 0 {
		return nil, nil, nil
	}
	// Read without the lock (most narinfos are signed already); those to
	// sign are read again and written under it, so that no rewrite races
	// a gc sweep and each starts from the narinfo as it is then.
	need, notSigned, err := s.each(ctx, todo, nil)
	if err != nil || len(need) == 0 {
		return nil, notSigned, err
	}
	release, err := s.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	var again []*store.PathInfo
	for _, pi := range todo {
		if need[pi.Path] {
			again = append(again, pi)
		}
	}
	done, why, err := s.each(ctx, again, func(ctx context.Context, pi *store.PathInfo, key string, text []byte) error {
		if err := s.t.Put(ctx, key, bytes.NewReader(text), int64(len(text)), cache.TypeNarInfo); err != nil {
			return err
		}
		s.memo.add(key, text)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for path, r := range why {
		notSigned[path] = r
	}
	for path := range done {
		signed = append(signed, path)
		s.known.add(path)
		s.log.Info("signed the narinfo already in the cache", "STORE_PATH", path, "key_name", s.key.Name)
	}
	slices.Sort(signed)
	return signed, notSigned, nil
}

// each reads the narinfos of paths (jobs at once) and returns those that
// need key's signature and may get it (after write, if set, wrote the
// signed text), and the reasons of those that need it but may not.
// Narinfos found signed are remembered. A failed read or write only
// leaves the narinfo as it was: it is reported, not fatal.
func (s *presentSigner) each(ctx context.Context, paths []*store.PathInfo, write func(context.Context, *store.PathInfo, string, []byte) error) (map[string]bool, map[string]string, error) {
	need, notSigned := map[string]bool{}, map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(s.jobs, 1))
	for _, pi := range paths {
		g.Go(func() error {
			key, text, why, err := s.read(gctx, pi)
			if err == nil && text != nil && write != nil {
				err = write(gctx, pi, key, text)
			}
			if errors.Is(err, context.Canceled) {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				notSigned[pi.Path] = "could not add the signature: " + err.Error()
			case why != "":
				notSigned[pi.Path] = why
			case text != nil:
				need[pi.Path] = true
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return need, notSigned, nil
}

// read reads pi's narinfo: text is it signed by key when it needs the
// signature and may get it, why the reason it may not.
func (s *presentSigner) read(ctx context.Context, pi *store.PathInfo) (key string, text []byte, why string, err error) {
	key, err = narinfoKey(pi.Path)
	if err != nil {
		return "", nil, "", err
	}
	b, err := s.t.Get(ctx, key)
	if errors.Is(err, cache.ErrNotFound) {
		return key, nil, "", nil // deleted since: the next push uploads it
	}
	if err != nil {
		return key, nil, "", err
	}
	text, why = AddSignature(b, pi, s.key)
	if text == nil && why == "" {
		s.known.add(pi.Path)
		s.memo.add(key, b)
	}
	return key, text, why, nil
}

// AddSignature returns narinfo b with k's signature added: every line
// kept as it is (fields this package does not know included), a Sig line
// of k's name that does not verify dropped, the new Sig line last. It
// returns nil, "" when b already carries a valid signature by k, and a
// reason (and nil) when b may not be signed by this machine: it cannot be
// parsed, or it does not describe pi (StorePath, NarHash, NarSize,
// References), so k would vouch for content pi does not have.
func AddSignature(b []byte, pi *store.PathInfo, k *nar.SecretKey) ([]byte, string) {
	ni, err := nar.ParseNarInfo(b)
	if err != nil {
		return nil, "its narinfo cannot be parsed (" + err.Error() + "); verify --repair writes it again"
	}
	if ni.Verify([]*nar.PublicKey{k.Public()}) > 0 {
		return nil, ""
	}
	refs := make([]string, 0, len(pi.References))
	for _, r := range pi.References {
		refs = append(refs, strings.TrimPrefix(r, nar.StoreDir+"/"))
	}
	slices.Sort(refs)
	have := slices.Sorted(slices.Values(ni.References))
	switch {
	case ni.StorePath != pi.Path:
		return nil, fmt.Sprintf("its narinfo names %s", ni.StorePath)
	case ni.NarHash.Algo != pi.NarHash.Algo || !bytes.Equal(ni.NarHash.Digest, pi.NarHash.Digest) || ni.NarSize != pi.NarSize:
		return nil, "the cached narinfo has another NarHash or NarSize than the local path (built differently elsewhere?), so this key cannot vouch for it; verify --repair replaces it with the local one"
	case !slices.Equal(have, refs):
		return nil, "the cached narinfo has other References than the local path, so this key cannot vouch for it; verify --repair replaces it with the local one"
	}
	sig := k.Sign(ni.Fingerprint())
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(line, "Sig: "+k.Name+":") || line == "" {
			continue
		}
		out.WriteString(line)
	}
	out.WriteString("Sig: " + sig + "\n")
	// What is written must be what Nix accepts and what k verifies.
	check, err := nar.ParseNarInfo(out.Bytes())
	if err != nil || check.Verify([]*nar.PublicKey{k.Public()}) != 1 {
		return nil, "adding the signature would not give a valid narinfo"
	}
	return out.Bytes(), ""
}

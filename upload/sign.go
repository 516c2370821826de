package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// signPresent makes "already cached" mean "cached and signed by Key":
// for each path of present whose narinfo lacks a valid signature by Key
// (unsigned, signed by others only, or by another key of Key's name), it
// adds Key's signature, keeping the others and every other line as it
// is. A narinfo that does not describe the local path (another NarHash,
// NarSize or References: signing it would vouch for content this machine
// does not have) is left alone and reported in notSigned. Narinfos found
// signed, and those the Pusher wrote with Key, are remembered for its
// lifetime: each is read at most once. A new Pusher (each `nixpushd
// push`) reads every cached narinfo of the closure once: a listing
// carries no signatures, and a member signed by another key must not
// pass for ours.
func (p *Pusher) signPresent(ctx context.Context, present []*store.PathInfo) (signed []string, notSigned map[string]string, err error) {
	if p.Key == nil || !p.SignPresent || len(present) == 0 {
		return nil, nil, nil
	}
	var todo []*store.PathInfo
	p.mu.Lock()
	for _, pi := range present {
		if !p.signedOK[pi.Path] {
			todo = append(todo, pi)
		}
	}
	p.mu.Unlock()
	if len(todo) == 0 {
		return nil, nil, nil
	}
	// Read without the lock (most narinfos are signed already); those to
	// sign are read again and written under it, so that no rewrite races
	// a gc sweep and each starts from the narinfo as it is then.
	need, notSigned, err := p.eachNarInfo(ctx, todo, nil)
	if err != nil || len(need) == 0 {
		return nil, notSigned, err
	}
	p.enterSession()
	defer p.leaveSession()
	_, release, err := p.readSession(ctx)
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
	done, why, err := p.eachNarInfo(ctx, again, func(ctx context.Context, pi *store.PathInfo, key string, text []byte) error {
		return p.t.Put(ctx, key, bytes.NewReader(text), int64(len(text)), cache.TypeNarInfo)
	})
	if err != nil {
		return nil, nil, err
	}
	for path, r := range why {
		notSigned[path] = r
	}
	for path := range done {
		signed = append(signed, path)
		p.rememberSigned(path)
		p.log().Info("signed the narinfo already in the cache", "STORE_PATH", path, "key_name", p.Key.Name)
	}
	slices.Sort(signed)
	return signed, notSigned, nil
}

// eachNarInfo reads the narinfos of paths (IOJobs at once) and returns
// those that need Key's signature and may get it (after write, if set,
// wrote the signed text), and the reasons of those that need it but may
// not. Narinfos found signed are remembered. A failed read or write only
// leaves the narinfo as it was: it is reported, not fatal.
func (p *Pusher) eachNarInfo(ctx context.Context, paths []*store.PathInfo, write func(context.Context, *store.PathInfo, string, []byte) error) (map[string]bool, map[string]string, error) {
	need, notSigned := map[string]bool{}, map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(p.IOJobs, 1))
	for _, pi := range paths {
		g.Go(func() error {
			key, text, why, err := p.readForSigning(gctx, pi)
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

// readForSigning reads pi's narinfo: text is it signed by Key when it
// needs the signature and may get it, why the reason it may not.
func (p *Pusher) readForSigning(ctx context.Context, pi *store.PathInfo) (key string, text []byte, why string, err error) {
	key, err = narinfoKey(pi.Path)
	if err != nil {
		return "", nil, "", err
	}
	b, err := p.t.Get(ctx, key)
	if errors.Is(err, cache.ErrNotFound) {
		return key, nil, "", nil // deleted since: the next push uploads it
	}
	if err != nil {
		return key, nil, "", err
	}
	text, why = AddSignature(b, pi, p.Key)
	if text == nil && why == "" {
		p.rememberSigned(pi.Path)
	}
	return key, text, why, nil
}

func (p *Pusher) rememberSigned(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.signedOK == nil {
		p.signedOK = map[string]bool{}
	}
	p.signedOK[path] = true
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

package lifecycle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// PlanRepair decides how to repair problems (as Verify reported them):
// per path, the weakest change that repairs it, and never a narinfo with
// fewer signatures than the one it replaces. Realisations and debug-info
// links are written again from the local store after the narinfos and
// NARs they point at; those the local store cannot explain are deleted
// if the credentials may delete (repair_sidecars.go).
func PlanRepair(ctx context.Context, t cache.Target, problems []Problem, opts RepairOptions) (*RepairPlan, error) {
	if opts.Key != nil && len(opts.TrustedKeys) > 0 && !keyTrusted(opts.Key, opts.TrustedKeys) {
		return nil, fmt.Errorf("%w: %s would sign narinfos that clients trusting only %s reject; give the key whose public half is trusted", ErrUntrustedKey, opts.Key.Public(), keyNames(opts.TrustedKeys))
	}
	raw := t
	t = retry.Default.Wrap(t, nil)
	var sidecars []Problem
	plan := &RepairPlan{Key: opts.Key}
	type pathProblems struct {
		hash  string
		kinds []string
	}
	byPath := map[string]*pathProblems{}
	var paths []string
	for _, p := range problems {
		if p.Kind == ProblemCacheInfo {
			continue // a push writes a missing one
		}
		if p.Kind == ProblemDebugInfo || p.Kind == ProblemRealisation {
			sidecars = append(sidecars, p) // after the paths they point at
			continue
		}
		if p.StorePath == "" && p.Kind == ProblemNarInfo {
			// An unparsable narinfo does not say its path, but its
			// name is the path's hash part: the local store may have it.
			if local := localPathOf(p.Hash); local != "" {
				p.StorePath = local
			}
		}
		if p.StorePath == "" {
			plan.Unrepairable = append(plan.Unrepairable, fmt.Sprintf("%s.narinfo: %s: it does not say its store path, so nothing here can replace it; delete it (a client treats the path as not cached then) and push the path again", p.Hash, p.Kind))
			continue
		}
		pp := byPath[p.StorePath]
		if pp == nil {
			pp = &pathProblems{hash: p.Hash}
			byPath[p.StorePath] = pp
			paths = append(paths, p.StorePath)
		}
		if !slices.Contains(pp.kinds, p.Kind) {
			pp.kinds = append(pp.kinds, p.Kind)
		}
	}
	slices.Sort(paths)
	for _, path := range paths {
		pp := byPath[path]
		ok, err := opts.Store.ValidPaths(ctx, []string{path})
		if err != nil {
			plan.Close()
			return nil, err
		}
		if len(ok) == 0 {
			plan.Unrepairable = append(plan.Unrepairable, fmt.Sprintf("%s: %s: not in the local store; repair it from a machine that has it (nixpushd verify --repair there), or delete its narinfo", path, strings.Join(pp.kinds, ", ")))
			continue
		}
		a, ref, err := planPath(ctx, t, path, pp.hash, pp.kinds, opts)
		if err != nil {
			plan.Close()
			return nil, err
		}
		if ref != nil {
			plan.Refused = append(plan.Refused, *ref)
			continue
		}
		plan.Actions = append(plan.Actions, *a)
	}
	planned := map[string]bool{}
	for _, a := range plan.Actions {
		planned[a.StorePath] = true
	}
	if err := planSidecars(ctx, t, raw, sidecars, opts, plan, planned); err != nil {
		plan.Close()
		return nil, err
	}
	return plan, nil
}

// localPathOf is the store path in the local store whose hash part is
// hash, or "".
func localPathOf(hash string) string {
	if !isHashPart(hash) {
		return ""
	}
	m, _ := filepath.Glob(nar.StoreDir + "/" + hash + "-*")
	for _, p := range m {
		if sp, err := nar.ParseStorePath(p); err == nil && sp.Hash == hash && !strings.HasSuffix(p, ".lock") {
			return p
		}
	}
	return ""
}

func keyTrusted(k *nar.SecretKey, trusted []*nar.PublicKey) bool {
	pub := k.Public()
	for _, tk := range trusted {
		if tk != nil && tk.Name == pub.Name && bytes.Equal(tk.Key, pub.Key) {
			return true
		}
	}
	return false
}

func keyNames(keys []*nar.PublicKey) string {
	var names []string
	for _, k := range keys {
		names = append(names, k.Name)
	}
	return strings.Join(names, ", ")
}

// planPath plans one path that the local store has.
func planPath(ctx context.Context, t cache.Target, path, hash string, kinds []string, opts RepairOptions) (*RepairAction, *Refusal, error) {
	a := &RepairAction{StorePath: path, Problems: kinds}
	narBad, rewrite := false, false
	for _, k := range kinds {
		switch k {
		case ProblemNARGone, ProblemNARSize, ProblemFileHash, ProblemNarHash:
			narBad = true
		case ProblemReference, ProblemNotCached:
		default: // signature, narinfo: only a new narinfo helps
			rewrite = true
		}
	}
	if !narBad && !rewrite {
		a.Kind = ActionPush
		return a, nil, nil
	}
	old, err := readNarInfo(ctx, t, hash)
	if err != nil {
		return nil, nil, err
	}
	if old != nil {
		a.OldSigs = oldSigsToKeep(ctx, old, opts)
	}
	if narBad && !rewrite && old != nil {
		if why, err := spoolSameNAR(ctx, old, opts, a); err != nil {
			return nil, nil, err
		} else if why == "" {
			a.Kind = ActionNAR
			return a, nil, nil
		} else {
			a.Why = why
		}
	}
	a.Kind = ActionRewrite
	if opts.Key == nil && ((old != nil && len(old.Sigs) > 0) || slices.Contains(kinds, ProblemSignature)) {
		r := &Refusal{StorePath: path, Problems: kinds}
		if old != nil {
			for _, s := range old.Sigs {
				n, _, _ := strings.Cut(s, ":")
				r.Signers = append(r.Signers, n)
			}
		}
		return nil, r, nil
	}
	return a, nil, nil
}

// spoolSameNAR compresses the local path as old says and keeps the file
// in a.spool if it hashes to old's FileHash; otherwise it says why not.
func spoolSameNAR(ctx context.Context, old *nar.NarInfo, opts RepairOptions, a *RepairAction) (string, error) {
	pis, err := opts.Store.PathInfos(ctx, []string{old.StorePath})
	if err != nil {
		return "", err
	}
	pi := pis[0]
	if !pi.NarHash.Equal(old.NarHash) || (pi.NarSize != 0 && pi.NarSize != old.NarSize) {
		return "the local path is not the one the narinfo describes (NarHash differs)", nil
	}
	if old.FileHash.IsZero() || old.FileHash.Algo != "sha256" {
		return "the narinfo has no sha256 FileHash to match", nil
	}
	co := opts.Compression
	if co.Method != old.Compression {
		co.Method, co.Level = old.Compression, 0
	}
	comp, err := compression.New(co)
	if err != nil {
		return fmt.Sprintf("cannot compress with %s here (%v)", old.Compression, err), nil
	}
	if comp.Ext() != "" && !strings.HasSuffix(old.URL, ".nar"+comp.Ext()) && !strings.HasSuffix(old.URL, comp.Ext()) {
		return fmt.Sprintf("its URL %s does not end in %s", old.URL, comp.Ext()), nil
	}
	f, err := os.CreateTemp(opts.TempDir, "nixpushd-repair-*")
	if err != nil {
		return "", fmt.Errorf("temporary file: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	fh := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, fh)}
	zw, err := comp.NewWriter(cw)
	if err != nil {
		return "", err
	}
	nh := sha256.New()
	if err := nar.DumpPath(io.MultiWriter(zw, nh), old.StorePath); err != nil {
		zw.Close()
		return "", fmt.Errorf("%s: %w", old.StorePath, err)
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !nar.NewSHA256(nh.Sum(nil)).Equal(old.NarHash) {
		return "the local path's contents do not hash to its NarHash", nil
	}
	if got := nar.NewSHA256(fh.Sum(nil)); !got.Equal(old.FileHash) || (old.FileSize > 0 && cw.n != old.FileSize) {
		return fmt.Sprintf("compressed here (%s), it hashes to %s, not the narinfo's FileHash %s", comp, got, old.FileHash), nil
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	keep = true
	a.URL, a.spool, a.size = old.URL, f.Name(), cw.n
	return "", nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ExecuteRepair carries out plan: NAR files first, then the rewrites and
// missing paths through p (whose Key must be plan's), NAR before narinfo,
// then the realisations and debug-info links (whose narinfos and NARs
// are then there), then the deletions. A plan with refusals is not
// executed at all.
func ExecuteRepair(ctx context.Context, t cache.Target, p *upload.Pusher, st store.Store, plan *RepairPlan) (*RepairResult, error) {
	if len(plan.Refused) > 0 {
		return nil, fmt.Errorf("%s a new signed narinfo or realisation and no signing key was given; nothing was changed", needs(len(plan.Refused)))
	}
	if p != nil && p.Key != plan.Key {
		return nil, errors.New("repair: the pusher's key is not the plan's")
	}
	raw := t
	t = retry.Default.Wrap(t, nil)
	res := &RepairResult{Failed: map[string]error{}}
	var want, force []string
	sigs := map[string][]string{}
	for _, a := range plan.Actions {
		switch a.Kind {
		case ActionNAR:
			err := putFile(ctx, t, a.URL, a.spool, a.size)
			if err != nil {
				res.Failed[a.StorePath] = fmt.Errorf("%s: upload %s: %w", a.StorePath, a.URL, err)
				continue
			}
			res.NARs++
		case ActionRewrite:
			want = append(want, a.StorePath)
			force = append(force, a.StorePath)
			sigs[a.StorePath] = a.OldSigs
		case ActionPush:
			want = append(want, a.StorePath)
		}
	}
	if len(want) > 0 {
		if p == nil {
			return res, errors.New("repair: rewrites planned but no pusher given")
		}
		if err := pushRepairs(ctx, p, st, plan, want, force, sigs, res); err != nil {
			return res, err
		}
	}
	return res, executeSidecars(ctx, t, raw, plan, res)
}

// pushRepairs uploads want (forcing force) with the cache's old
// signatures kept where they still sign what is written.
func pushRepairs(ctx context.Context, p *upload.Pusher, st store.Store, plan *RepairPlan, want, force []string, sigs map[string][]string, res *RepairResult) error {
	closure, err := st.Closure(ctx, want)
	if err != nil {
		return err
	}
	// Keep the signatures the cache's narinfo had, where they still sign
	// what is written: a rewrite never drops another key's signature.
	for i, pi := range closure {
		old, ok := sigs[pi.Path]
		if !ok || len(old) == 0 {
			continue
		}
		c := *pi
		c.Sigs = keptSigs(&c, old, plan.Key)
		closure[i] = &c
	}
	pr, err := p.PushForce(ctx, closure, force)
	if pr != nil {
		res.Uploaded, res.Present = pr.Uploaded, pr.Present
		for k, v := range pr.Failed {
			res.Failed[k] = v
		}
	}
	return err
}

// keptSigs is pi's signatures plus old (the cache's narinfo's, which
// sign the same fingerprint); the repair key's own old signature is
// replaced by a fresh one.
func keptSigs(pi *store.PathInfo, old []string, key *nar.SecretKey) []string {
	out := slices.Clone(pi.Sigs)
	for _, s := range old {
		name, _, _ := strings.Cut(s, ":")
		if (key != nil && name == key.Name) || slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// oldSigsToKeep are the signatures of old that a rewrite keeps: all of
// them if the local path has the same fingerprint (signatures cover
// only StorePath, NarHash, NarSize and References, not the URL or
// FileHash, so they stay valid), except those a trusted key of the same
// name does not verify.
func oldSigsToKeep(ctx context.Context, old *nar.NarInfo, opts RepairOptions) []string {
	pis, err := opts.Store.PathInfos(ctx, []string{old.StorePath})
	if err != nil || len(pis) == 0 {
		return nil
	}
	pi := pis[0]
	if !bytes.Equal(nar.Fingerprint(pi.Path, pi.NarHash, pi.NarSize, pi.References), old.Fingerprint()) {
		return nil
	}
	var keep []string
	fp := old.Fingerprint()
	for _, s := range old.Sigs {
		name, _, _ := strings.Cut(s, ":")
		bad := false
		for _, k := range opts.TrustedKeys {
			if k.Name == name && !k.Verify(fp, s) {
				bad = true
			}
		}
		if !bad {
			keep = append(keep, s)
		}
	}
	return keep
}

// putFile uploads the file name under key; the retrying target rewinds it
// for each try.
func putFile(ctx context.Context, t cache.Target, key, name string, size int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.Put(ctx, key, f, size, cache.TypeNAR)
}

// needs writes "1 path needs", "2 paths need" (a refused realisation
// counts as its path).
func needs(n int) string {
	if n == 1 {
		return "1 path needs"
	}
	return plural(n, "path") + " need"
}

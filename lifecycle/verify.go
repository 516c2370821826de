package lifecycle

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/count"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/upload"
)

// Problem kinds, stable strings for scripts and metrics.
const (
	ProblemCacheInfo = "cache-info" // nix-cache-info missing or wrong
	ProblemNarInfo   = "narinfo"    // unreadable or unparsable narinfo
	ProblemNARGone   = "nar-missing"
	ProblemNARSize   = "nar-size"   // the NAR file's size is not FileSize
	ProblemReference = "reference"  // a reference has no narinfo
	ProblemSignature = "signature"  // no valid signature by a trusted key
	ProblemFileHash  = "file-hash"  // --full: the NAR file does not hash to FileHash
	ProblemNarHash   = "nar-hash"   // --full: the decompressed NAR is not NarHash/NarSize
	ProblemNotCached = "not-cached" // --root: a root has no narinfo
)

// Note kinds: what no client trips over, but someone may want to tidy.
// Notes do not count as problems.
const (
	NoteOrphanNAR    = "orphan-nar"    // a NAR file no narinfo names
	NoteStrayNarInfo = "stray-narinfo" // a .narinfo whose name is not a hash part
)

// Note is one thing verify saw that is harmless to clients.
type Note struct {
	Kind, Key, Detail string
}

func (n Note) String() string { return fmt.Sprintf("%s: %s: %s", n.Key, n.Kind, n.Detail) }

// Problem is one thing a client would trip over.
type Problem struct {
	Kind      string
	Hash      string // hash part of the path ("" for nix-cache-info)
	StorePath string // full path, when the narinfo said it
	Detail    string
	// Ref is the missing reference's hash part (ProblemReference).
	Ref string
	// Key is the object, when it is not a narinfo (ProblemDebugInfo).
	Key string
}

func (p Problem) String() string {
	who := p.StorePath
	switch {
	case p.Key != "":
		who = p.Key
	case who == "" && p.Hash != "":
		who = p.Hash + ".narinfo"
	case who == "":
		who = "nix-cache-info"
	}
	return fmt.Sprintf("%s: %s: %s", who, p.Kind, p.Detail)
}

// VerifyOptions configures a verification.
type VerifyOptions struct {
	// TrustedKeys, if any, must each narinfo have a valid signature by.
	TrustedKeys []*nar.PublicKey
	Full        bool // download every NAR and check FileHash and NarHash
	Jobs        int  // reads in flight
	Log         *slog.Logger
	// Roots, if any, are store paths whose closures are verified, walked
	// from narinfo to narinfo instead of listing the cache: for a cache
	// that cannot be listed (http://, or no s3:ListBucket). NAR files
	// are checked for presence only (their sizes need --full).
	Roots []string
	// Note, if set, is called (serialised) for each note.
	Note func(Note)
}

// VerifyResult sums up a verification.
type VerifyResult struct {
	NarInfos  int
	NARs      int
	Problems  int
	ByKind    map[string]int
	BytesRead int64 // NAR bytes downloaded by --full
	Requests  int64
	Duration  time.Duration
	Roots     int // --root: the roots whose closure was walked
	Notes     map[string]int
}

func (r *VerifyResult) note(opts VerifyOptions, n Note) {
	if r.Notes == nil {
		r.Notes = map[string]int{}
	}
	r.Notes[n.Kind]++
	if opts.Note != nil {
		opts.Note(n)
	}
}

func (r *VerifyResult) String() string {
	s := fmt.Sprintf("verified %s and %s in %.1fs (%s", plural(r.NarInfos, "narinfo"), plural(r.NARs, "NAR file"), r.Duration.Seconds(), plural(int(r.Requests), "request"))
	if r.Roots > 0 {
		s = fmt.Sprintf("verified the closure of %s, walked without listing: %s and %s in %.1fs (%s", plural(r.Roots, "root"), plural(r.NarInfos, "narinfo"), plural(r.NARs, "NAR file"), r.Duration.Seconds(), plural(int(r.Requests), "request"))
	}
	if r.BytesRead > 0 {
		s += ", " + HumanBytes(r.BytesRead) + " downloaded"
	}
	s += "): "
	if len(r.Notes) > 0 {
		var notes []string
		for _, k := range slices.Sorted(mapKeys(r.Notes)) {
			notes = append(notes, fmt.Sprintf("%d %s", r.Notes[k], k))
		}
		s = strings.TrimSuffix(s, ": ") + " [notes: " + strings.Join(notes, ", ") + "]: "
	}
	if r.Problems == 0 {
		return s + "no problems"
	}
	var kinds []string
	for _, k := range slices.Sorted(mapKeys(r.ByKind)) {
		kinds = append(kinds, fmt.Sprintf("%d %s", r.ByKind[k], k))
	}
	return s + fmt.Sprintf("%s (%s)", plural(r.Problems, "problem"), strings.Join(kinds, ", "))
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Verify checks the cache the way a client relies on it and calls report
// (serialised) for each problem. The error is for a cache that could not
// be read at all.
func Verify(ctx context.Context, t cache.Target, opts VerifyOptions, report func(Problem)) (*VerifyResult, error) {
	start := time.Now()
	if opts.Jobs <= 0 {
		opts.Jobs = upload.DefaultIOJobs
	}
	res := &VerifyResult{ByKind: map[string]int{}}
	t, counter := count.Wrap(t)
	t = retry.Default.Wrap(t, nil) // each try counted
	counted := func(r *VerifyResult, err error) (*VerifyResult, error) {
		if r != nil {
			r.Requests = counter.Requests()
		}
		return r, err
	}
	var mu sync.Mutex
	add := func(p Problem) {
		mu.Lock()
		defer mu.Unlock()
		res.Problems++
		res.ByKind[p.Kind]++
		if report != nil {
			report(p)
		}
	}

	if len(opts.Roots) > 0 {
		full, err := walkClosure(ctx, t, opts, res, add)
		if err != nil {
			return nil, err
		}
		return counted(finishVerify(ctx, t, opts, res, add, full, start))
	}
	inv, err := Scan(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("verify: list: %w", err)
	}
	res.NarInfos, res.NARs = len(inv.NarInfos), len(inv.NARs)

	if inv.CacheInfo == nil {
		add(Problem{Kind: ProblemCacheInfo, Detail: "missing; clients cannot use the cache (nixpushd push writes it)"})
	} else {
		if err := checkCacheInfoObject(ctx, t, add); err != nil {
			return nil, fmt.Errorf("verify: %s: %w", listedNotRead, err)
		}
	}

	hashes := make([]string, 0, len(inv.NarInfos))
	for h := range inv.NarInfos {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	f := &fetcher{t: t, jobs: opts.Jobs}
	var full []*nar.NarInfo // --full: NARs to download, deduplicated
	seenNAR := map[string]bool{}
	referenced := map[string]bool{}
	derivers := map[string]bool{} // Deriver fields: which log/<drv> belong
	// NAR key → store path, only for a cache with debug-info links: a
	// link naming a missing NAR is repaired through the path that owns it.
	var pathOfNAR map[string]string
	if len(inv.DebugInfo) > 0 {
		pathOfNAR = map[string]string{}
	}
	var denied error
	err = f.fetch(ctx, hashes, func(h string, ni *nar.NarInfo, err error) {
		if errors.Is(err, cache.ErrNotFound) {
			return // deleted since the listing
		}
		if cache.IsConfig(err) {
			denied = cmp.Or(denied, err) // the same for every narinfo: said once
			return
		}
		if ni != nil {
			referenced[ni.URL] = true
			if pathOfNAR != nil {
				pathOfNAR[ni.URL] = ni.StorePath
			}
			if ni.Deriver != "" {
				derivers[ni.Deriver] = true
			}
		}
		narState := func(ni *nar.NarInfo) (bool, int64, bool) {
			o, ok := inv.NARs[ni.URL]
			return ok, o.Size, true
		}
		if checkNarInfo(h, ni, err, opts, add, narState, func(ref string) bool {
			_, ok := inv.NarInfos[ref]
			return ok
		}) && opts.Full && !seenNAR[ni.URL] {
			seenNAR[ni.URL] = true
			full = append(full, ni)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if denied != nil {
		return nil, fmt.Errorf("verify: %s: %w", listedNotRead, denied)
	}
	// What no client trips over, but someone should tidy: notes.
	for _, k := range slices.Sorted(mapKeys(inv.NARs)) {
		if !referenced[k] {
			res.note(opts, Note{Kind: NoteOrphanNAR, Key: k, Detail: "no narinfo names it; harmless, gc deletes it once older than --grace"})
		}
	}
	for _, o := range inv.Stray {
		res.note(opts, Note{Kind: NoteStrayNarInfo, Key: o.Key, Detail: "its name is not the hash part of a store path, so no Nix client ever asks for it; delete it"})
	}
	if err := verifySidecars(ctx, t, inv, derivers, pathOfNAR, opts, res, add); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return counted(finishVerify(ctx, t, opts, res, add, full, start))
}

// listedNotRead explains a listing that worked followed by reads that
// are denied.
const listedNotRead = "the cache can be listed but not read (the credentials' policy lacks s3:GetObject on its objects: give credentials that may read them, or verify through the URL clients use, http(s)://…, with --root)"

// checkCacheInfoObject reads nix-cache-info and reports what is wrong;
// the error is a cache that cannot be read at all (access denied).
func checkCacheInfoObject(ctx context.Context, t cache.Target, add func(Problem)) error {
	b, err := t.Get(ctx, "nix-cache-info")
	if cache.IsConfig(err) {
		return err
	}
	if errors.Is(err, cache.ErrNotFound) {
		add(Problem{Kind: ProblemCacheInfo, Detail: "missing; clients cannot use the cache (nixpushd push writes it)"})
	} else if err != nil {
		add(Problem{Kind: ProblemCacheInfo, Detail: err.Error()})
	} else if msg := checkCacheInfo(b); msg != "" {
		add(Problem{Kind: ProblemCacheInfo, Detail: msg})
	}
	return nil
}

// checkNarInfo reports the problems of one narinfo (h's, read as ni or
// failing with err): its NAR (narState says whether it is there, its
// size, and whether the size is known), its references (hasRef), its
// signatures. It returns whether the NAR is there to be checked further.
func checkNarInfo(h string, ni *nar.NarInfo, err error, opts VerifyOptions, add func(Problem), narState func(*nar.NarInfo) (ok bool, size int64, sizeKnown bool), hasRef func(hash string) bool) bool {
	var pe *ParseError
	if errors.As(err, &pe) {
		add(Problem{Kind: ProblemNarInfo, Hash: h, Detail: err.Error() + "; clients fail on it: verify --repair writes it again if the local store has the path, else delete it and push the path again"})
		return false
	}
	if err != nil {
		add(Problem{Kind: ProblemNarInfo, Hash: h, Detail: "cannot read it: " + err.Error()})
		return false
	}
	p := Problem{Hash: h, StorePath: ni.StorePath}
	narOK := false
	if ok, size, known := narState(ni); !ok {
		p.Kind, p.Detail = ProblemNARGone, fmt.Sprintf("its NAR file %s is missing", ni.URL)
		add(p)
	} else if known && ni.FileSize > 0 && size != ni.FileSize {
		p.Kind, p.Detail = ProblemNARSize, fmt.Sprintf("its NAR file %s has %d bytes, the narinfo says FileSize %d (truncated?)", ni.URL, size, ni.FileSize)
		add(p)
	} else {
		narOK = true
	}
	for _, r := range ni.References {
		sp, err := nar.ParseBaseName(r)
		if err != nil || sp.Hash == h {
			continue
		}
		if !hasRef(sp.Hash) {
			p.Kind, p.Ref, p.Detail = ProblemReference, sp.Hash, fmt.Sprintf("its reference %s has no narinfo; clients fail with \"path is not valid\"", nar.StoreDir+"/"+r)
			add(p)
		}
	}
	p.Ref = ""
	if len(opts.TrustedKeys) > 0 && ni.Verify(opts.TrustedKeys) == 0 {
		p.Kind, p.Detail = ProblemSignature, signatureDetail(ni, opts.TrustedKeys)
		add(p)
	}
	return narOK
}

// signatureDetail says why ni has no valid signature by keys: unsigned,
// signed by other names, or signed under a trusted name by another key
// of that name, which Nix cannot tell apart (one key per name).
func signatureDetail(ni *nar.NarInfo, keys []*nar.PublicKey) string {
	var names, clashes []string
	for _, s := range ni.Sigs {
		n, _, _ := strings.Cut(s, ":")
		names = append(names, n)
		if slices.ContainsFunc(keys, func(k *nar.PublicKey) bool { return k.Name == n }) && !slices.Contains(clashes, n) {
			clashes = append(clashes, n)
		}
	}
	switch {
	case len(clashes) > 0:
		return fmt.Sprintf("no valid signature by a trusted key: signed as %s, but by another public key than the trusted key of that name (two machines with one key name?); sign with the trusted key: verify --repair --secret-key-file THAT-KEY", strings.Join(clashes, ", "))
	case len(names) > 0:
		return "no valid signature by a trusted key (signed by " + strings.Join(names, ", ") + ")"
	}
	return "no valid signature by a trusted key (unsigned)"
}

// finishVerify is --full's download of every NAR, and the duration.
func finishVerify(ctx context.Context, t cache.Target, opts VerifyOptions, res *VerifyResult, add func(Problem), full []*nar.NarInfo, start time.Time) (*VerifyResult, error) {
	if opts.Full {
		var read atomic.Int64
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(min(opts.Jobs, 2*runtime.GOMAXPROCS(0)))
		for _, ni := range full {
			g.Go(func() error {
				n, prob, err := checkNAR(gctx, t, ni)
				read.Add(n)
				if err != nil {
					return err
				}
				if prob != nil {
					add(*prob)
				}
				return nil
			})
		}
		err := g.Wait()
		res.BytesRead = read.Load()
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

func checkCacheInfo(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "StoreDir" {
			if strings.TrimSpace(v) != nar.StoreDir {
				return fmt.Sprintf("StoreDir is %q; Nix clients with %s refuse the cache", strings.TrimSpace(v), nar.StoreDir)
			}
			return ""
		}
	}
	return "has no StoreDir line"
}

// checkNAR downloads ni's NAR and checks FileHash, NarHash and NarSize.
// It returns the bytes read and a problem, or an error when the cache
// itself failed.
func checkNAR(ctx context.Context, t cache.Target, ni *nar.NarInfo) (int64, *Problem, error) {
	sp, _ := nar.ParseStorePath(ni.StorePath)
	prob := func(kind, detail string) *Problem {
		return &Problem{Kind: kind, Hash: sp.Hash, StorePath: ni.StorePath, Detail: detail}
	}
	o, ok := t.(cache.Opener)
	if !ok {
		return 0, nil, fmt.Errorf("%s cannot stream objects", t)
	}
	rc, err := o.Open(ctx, ni.URL)
	if errors.Is(err, cache.ErrNotFound) {
		return 0, prob(ProblemNARGone, fmt.Sprintf("its NAR file %s is missing", ni.URL)), nil
	}
	if err != nil {
		return 0, nil, err
	}
	defer rc.Close()
	fileHash := sha256.New()
	counted := &countReader{r: io.TeeReader(rc, fileHash)}
	zr, err := compression.NewReader(ni.Compression, counted)
	if err != nil {
		return counted.n, prob(ProblemNarHash, fmt.Sprintf("%s: %v", ni.URL, err)), nil
	}
	narHash := sha256.New()
	narSize, derr := io.Copy(narHash, zr)
	zr.Close()
	if ctx.Err() != nil {
		return counted.n, nil, ctx.Err()
	}
	// Drain, so that FileHash covers the whole file even if the
	// decompressor stopped early.
	io.Copy(io.Discard, counted)
	if !ni.FileHash.IsZero() && ni.FileHash.Algo == "sha256" {
		if got := nar.NewSHA256(fileHash.Sum(nil)); !got.Equal(ni.FileHash) {
			return counted.n, prob(ProblemFileHash, fmt.Sprintf("%s hashes to %s, the narinfo says %s", ni.URL, got, ni.FileHash)), nil
		}
	}
	if derr != nil {
		return counted.n, prob(ProblemNarHash, fmt.Sprintf("%s does not decompress: %v", ni.URL, derr)), nil
	}
	if got := nar.NewSHA256(narHash.Sum(nil)); !got.Equal(ni.NarHash) || narSize != ni.NarSize {
		return counted.n, prob(ProblemNarHash, fmt.Sprintf("%s decompresses to %s (%d bytes), the narinfo says %s (%d bytes)", ni.URL, got, narSize, ni.NarHash, ni.NarSize)), nil
	}
	return counted.n, nil, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// walkClosure verifies the closure of opts.Roots without listing: each
// narinfo is read, its references followed, its NAR asked about. It
// returns the NARs for --full.
func walkClosure(ctx context.Context, t cache.Target, opts VerifyOptions, res *VerifyResult, add func(Problem)) ([]*nar.NarInfo, error) {
	if err := checkCacheInfoObject(ctx, t, add); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	type got struct {
		ni  *nar.NarInfo
		err error
	}
	found := map[string]got{}
	var level []string
	rootPath := map[string]string{}
	for _, r := range opts.Roots {
		sp, err := nar.ParseStorePath(r)
		if err != nil {
			return nil, fmt.Errorf("verify: root %s: %w", r, err)
		}
		if _, ok := rootPath[sp.Hash]; !ok {
			rootPath[sp.Hash] = r
			level = append(level, sp.Hash)
		}
	}
	res.Roots = len(rootPath)
	f := &fetcher{t: t, jobs: opts.Jobs}
	for len(level) > 0 {
		slices.Sort(level)
		var next []string
		var denied error
		err := f.fetch(ctx, level, func(h string, ni *nar.NarInfo, err error) {
			if cache.IsConfig(err) {
				denied = cmp.Or(denied, err)
				return
			}
			found[h] = got{ni, err}
			if err != nil {
				return
			}
			for _, r := range ni.References {
				if sp, err := nar.ParseBaseName(r); err == nil {
					if _, seen := found[sp.Hash]; !seen && !slices.Contains(next, sp.Hash) && !slices.Contains(level, sp.Hash) {
						next = append(next, sp.Hash)
					}
				}
			}
		})
		if err == nil && denied != nil {
			err = denied
		}
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		level = next
	}

	// Which NAR files are there: one existence check each.
	var infos []*nar.NarInfo
	for _, g := range found {
		if g.ni != nil {
			infos = append(infos, g.ni)
		}
	}
	slices.SortFunc(infos, func(a, b *nar.NarInfo) int { return strings.Compare(a.StorePath, b.StorePath) })
	present := map[string]bool{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for _, ni := range infos {
		mu.Lock()
		_, asked := present[ni.URL]
		present[ni.URL] = false
		mu.Unlock()
		if asked {
			continue
		}
		g.Go(func() error {
			ok, err := t.Exists(gctx, ni.URL)
			if err != nil {
				return fmt.Errorf("check %s: %w", ni.URL, err)
			}
			mu.Lock()
			present[ni.URL] = ok
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}

	hashes := slices.Sorted(mapKeys(found))
	var full []*nar.NarInfo
	seenNAR := map[string]bool{}
	for _, h := range hashes {
		g := found[h]
		if errors.Is(g.err, cache.ErrNotFound) {
			if p, ok := rootPath[h]; ok {
				add(Problem{Kind: ProblemNotCached, Hash: h, StorePath: p, Detail: "the cache has no narinfo for this root; push it"})
			}
			continue // a missing reference: its referrer reports it
		}
		res.NarInfos++
		narState := func(ni *nar.NarInfo) (bool, int64, bool) { return present[ni.URL], 0, false }
		hasRef := func(ref string) bool {
			r, ok := found[ref]
			return ok && !errors.Is(r.err, cache.ErrNotFound)
		}
		if checkNarInfo(h, g.ni, g.err, opts, add, narState, hasRef) && !seenNAR[g.ni.URL] {
			seenNAR[g.ni.URL] = true
			if opts.Full {
				full = append(full, g.ni)
			}
		}
	}
	for _, ok := range present {
		if ok {
			res.NARs++
		}
	}
	return full, nil
}

// verifySidecars checks the listings, links and logs of a listed cache:
// derivers are the Deriver fields of the narinfos read, pathOfNAR the
// store path of the narinfo naming each NAR key.
func verifySidecars(ctx context.Context, t cache.Target, inv *Inventory, derivers map[string]bool, pathOfNAR map[string]string, opts VerifyOptions, res *VerifyResult, add func(Problem)) error {
	for _, h := range slices.Sorted(maps.Keys(inv.Listings)) {
		if _, ok := inv.NarInfos[h]; !ok {
			res.note(opts, Note{Kind: NoteOrphanListing, Key: inv.Listings[h].Key, Detail: "no narinfo for its path; harmless, gc deletes it once older than --grace"})
		}
	}
	for _, drv := range slices.Sorted(maps.Keys(inv.Logs)) {
		if !derivers[drv] {
			res.note(opts, Note{Kind: NoteOrphanBuildLog, Key: inv.Logs[drv].Key, Detail: "no narinfo names this derivation as its Deriver; nix log finds it only by the .drv; gc deletes it once older than --grace"})
		}
	}
	outOf, badDoi, err := readRealisations(ctx, t, inv, opts.Jobs)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(badDoi)) {
		add(Problem{Kind: ProblemRealisation, Key: k, Detail: badDoi[k].Error() + "; ca-derivations clients fail on it: verify --repair writes it again if the local store has the realisation, else deletes it"})
	}
	for _, k := range slices.Sorted(maps.Keys(outOf)) {
		if _, ok := inv.NarInfos[outOf[k]]; !ok {
			add(Problem{Kind: ProblemRealisation, Key: k, Detail: "its outPath has no narinfo; ca-derivations clients fail to substitute it: verify --repair pushes the path if the local store has it, else deletes it"})
		}
	}
	if len(inv.DebugInfo) == 0 {
		return nil
	}
	narOf, bad, err := readDebugInfoLinks(ctx, t, inv, opts.Jobs)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(bad)) {
		add(Problem{Kind: ProblemDebugInfo, Key: k, Detail: bad[k].Error() + "; debuginfod clients fail on it: verify --repair writes it again if a cached path of the local store has the debug file, else deletes it"})
	}
	for _, k := range slices.Sorted(maps.Keys(narOf)) {
		if _, ok := inv.NARs[narOf[k]]; !ok {
			// The path whose narinfo names the NAR, if any: repair
			// restores the NAR and then the link.
			p := Problem{Kind: ProblemDebugInfo, Key: k, StorePath: pathOfNAR[narOf[k]],
				Detail: fmt.Sprintf("its NAR file %s is missing; debuginfod clients fail on it: verify --repair restores the NAR and the link from the local store, else deletes the link", narOf[k])}
			if sp, err := nar.ParseStorePath(p.StorePath); err == nil {
				p.Hash = sp.Hash
			}
			add(p)
		}
	}
	return nil
}

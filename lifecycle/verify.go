package lifecycle

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	ProblemNARSize   = "nar-size"  // the NAR file's size is not FileSize
	ProblemReference = "reference" // a reference has no narinfo
	ProblemSignature = "signature" // no valid signature by a trusted key
	ProblemFileHash  = "file-hash" // --full: the NAR file does not hash to FileHash
	ProblemNarHash   = "nar-hash"  // --full: the decompressed NAR is not NarHash/NarSize
)

// Problem is one thing a client would trip over.
type Problem struct {
	Kind      string
	Hash      string // hash part of the path ("" for nix-cache-info)
	StorePath string // full path, when the narinfo said it
	Detail    string
	// Ref is the missing reference's hash part (ProblemReference).
	Ref string
}

func (p Problem) String() string {
	who := p.StorePath
	switch {
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
}

func (r *VerifyResult) String() string {
	s := fmt.Sprintf("verified %d narinfos and %d NAR files in %.1fs (%d requests", r.NarInfos, r.NARs, r.Duration.Seconds(), r.Requests)
	if r.BytesRead > 0 {
		s += ", " + HumanBytes(r.BytesRead) + " downloaded"
	}
	s += "): "
	if r.Problems == 0 {
		return s + "no problems"
	}
	var kinds []string
	for _, k := range slices.Sorted(mapKeys(r.ByKind)) {
		kinds = append(kinds, fmt.Sprintf("%d %s", r.ByKind[k], k))
	}
	return s + fmt.Sprintf("%d problems (%s)", r.Problems, strings.Join(kinds, ", "))
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

	inv, err := Scan(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("verify: list: %w", err)
	}
	res.NarInfos, res.NARs = len(inv.NarInfos), len(inv.NARs)

	if inv.CacheInfo == nil {
		add(Problem{Kind: ProblemCacheInfo, Detail: "missing; clients cannot use the cache (nixpushd push writes it)"})
	} else {
		b, err := t.Get(ctx, "nix-cache-info")
		if err != nil {
			add(Problem{Kind: ProblemCacheInfo, Detail: err.Error()})
		} else if msg := checkCacheInfo(b); msg != "" {
			add(Problem{Kind: ProblemCacheInfo, Detail: msg})
		}
	}

	hashes := make([]string, 0, len(inv.NarInfos))
	for h := range inv.NarInfos {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	f := &fetcher{t: t, jobs: opts.Jobs, retry: retry.Default}
	var full []*nar.NarInfo // --full: NARs to download, deduplicated
	seenNAR := map[string]bool{}
	err = f.fetch(ctx, hashes, func(h string, ni *nar.NarInfo, err error) {
		if errors.Is(err, cache.ErrNotFound) {
			return // deleted since the listing
		}
		var pe *ParseError
		if errors.As(err, &pe) {
			add(Problem{Kind: ProblemNarInfo, Hash: h, Detail: err.Error()})
			return
		}
		if err != nil {
			add(Problem{Kind: ProblemNarInfo, Hash: h, Detail: "cannot read it: " + err.Error()})
			return
		}
		p := Problem{Hash: h, StorePath: ni.StorePath}
		if o, ok := inv.NARs[ni.URL]; !ok {
			p.Kind, p.Detail = ProblemNARGone, fmt.Sprintf("its NAR file %s is missing", ni.URL)
			add(p)
		} else if ni.FileSize > 0 && o.Size != ni.FileSize {
			p.Kind, p.Detail = ProblemNARSize, fmt.Sprintf("its NAR file %s has %d bytes, the narinfo says FileSize %d (truncated?)", ni.URL, o.Size, ni.FileSize)
			add(p)
		} else if opts.Full && !seenNAR[ni.URL] {
			seenNAR[ni.URL] = true
			full = append(full, ni)
		}
		for _, r := range ni.References {
			sp, err := nar.ParseBaseName(r)
			if err != nil || sp.Hash == h {
				continue
			}
			if _, ok := inv.NarInfos[sp.Hash]; !ok {
				p.Kind, p.Ref, p.Detail = ProblemReference, sp.Hash, fmt.Sprintf("its reference %s has no narinfo; clients fail with \"path is not valid\"", nar.StoreDir+"/"+r)
				add(p)
			}
		}
		p.Ref = ""
		if len(opts.TrustedKeys) > 0 && ni.Verify(opts.TrustedKeys) == 0 {
			var names []string
			for _, s := range ni.Sigs {
				n, _, _ := strings.Cut(s, ":")
				names = append(names, n)
			}
			p.Kind, p.Detail = ProblemSignature, "no valid signature by a trusted key"
			if len(names) > 0 {
				p.Detail += " (signed by " + strings.Join(names, ", ") + ")"
			} else {
				p.Detail += " (unsigned)"
			}
			add(p)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}

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
	res.Requests = counter.Requests()
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

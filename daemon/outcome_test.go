package daemon

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// naiveOutcome is the plain walk over maps that outcomes replaces.
func naiveOutcome(root string, byPath map[string]*store.PathInfo, res *upload.Result) (string, rootCounts, error) {
	seen := map[string]bool{root: true}
	stack := []string{root}
	var fp string
	var ferr error
	var c rootCounts
	signed := map[string]bool{}
	for _, p := range res.SignedPaths {
		signed[p] = true
	}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if err := res.Failed[p]; err != nil && (ferr == nil || (cache.IsPathPermanent(err) && !cache.IsPathPermanent(ferr))) {
			fp, ferr = p, err
		}
		c.closure++
		if signed[p] {
			c.signed++
		}
		if u, ok := res.Uploads[p]; ok {
			c.uploaded++
			c.narBytes += u.NarSize
			c.stored += u.FileSize
			if u.ReusedNAR {
				c.reused++
			}
		}
		if pi := byPath[p]; pi != nil {
			for _, r := range pi.References {
				if !seen[r] {
					seen[r] = true
					stack = append(stack, r)
				}
			}
		}
	}
	return fp, c, ferr
}

// On random DAGs (self-references, references outside the batch, roots
// outside it, failures transient and permanent), every root's outcome
// and counts are the plain walk's.
func TestOutcomesMatchWalk(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		n := 1 + rng.IntN(300)
		name := func(i int) string { return fmt.Sprintf("/nix/store/%032d-p", i) }
		var closure []*store.PathInfo
		byPath := map[string]*store.PathInfo{}
		res := &upload.Result{Failed: map[string]error{}, Uploads: map[string]upload.Upload{}}
		for i := range n {
			pi := &store.PathInfo{Path: name(i)}
			for range rng.IntN(4) {
				pi.References = append(pi.References, name(rng.IntN(i+1)))
			}
			if rng.IntN(20) == 0 {
				pi.References = append(pi.References, name(n+rng.IntN(5))) // not in the batch
			}
			closure = append(closure, pi)
			byPath[pi.Path] = pi
			switch rng.IntN(10) {
			case 0:
				res.Failed[pi.Path] = errors.New("transient")
			case 1:
				res.Failed[pi.Path] = &cache.PermanentError{Err: errors.New("permanent")}
			case 2, 3, 4:
				res.Uploads[pi.Path] = upload.Upload{NarSize: int64(rng.IntN(1000)), FileSize: int64(rng.IntN(500)), ReusedNAR: rng.IntN(3) == 0}
			case 5:
				res.SignedPaths = append(res.SignedPaths, pi.Path)
			}
		}
		o := newOutcomes(closure, res)
		for i := range n + 3 {
			root := name(i)
			if i >= n {
				root = name(n + 100 + i) // a root outside the batch
			}
			wp, wc, werr := naiveOutcome(root, byPath, res)
			gp, gc, gerr := o.root(root)
			if gp != wp || !errors.Is(gerr, werr) || gc != wc {
				t.Fatalf("seed %d root %d: got %q %v %+v, want %q %v %+v", seed, i, gp, gerr, gc, wp, werr, wc)
			}
		}
	}
}

// BenchmarkOutcomes5000 is a burst's bookkeeping: 5,001 roots, each
// path's closure overlapping the others' (the DAG of many-paths.nix).
func BenchmarkOutcomes5000(b *testing.B) {
	const n = 5000
	name := func(i int) string { return fmt.Sprintf("/nix/store/%032d-p", i) }
	var closure []*store.PathInfo
	byPath := map[string]*store.PathInfo{}
	res := &upload.Result{Failed: map[string]error{}, Uploads: map[string]upload.Upload{}}
	for i := range n {
		pi := &store.PathInfo{Path: name(i)}
		if i > 0 {
			pi.References = []string{name(i / 2), name(i / 3), name(i * 7 / 11)}
		}
		closure = append(closure, pi)
		byPath[pi.Path] = pi
		res.Uploads[pi.Path] = upload.Upload{NarSize: 100}
	}
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			for _, pi := range closure {
				naiveOutcome(pi.Path, byPath, res)
			}
		}
	})
	b.Run("outcomes", func(b *testing.B) {
		for b.Loop() {
			o := newOutcomes(closure, res)
			for _, pi := range closure {
				o.root(pi.Path)
			}
		}
	})
}

package daemon

import (
	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// outcomes answers, for each root of a pushed batch, whether its closure
// made it and what the push did for it. A burst queues every new path as
// a root and their closures overlap, so the walks go over integer
// indexes, each path's facts looked up once, not over maps of paths per
// root.
type outcomes struct {
	paths  []string
	refs   [][]int32
	idx    map[string]int32
	failed []error
	facts  []pathFacts
	seen   []uint32 // == epoch: reached by the current walk
	epoch  uint32
	stack  []int32
}

// rootCounts are one root's share of a push.
type rootCounts struct {
	closure, uploaded, signed, reused int
	narBytes, stored                  int64
}

// pathFacts is what Push did for one path.
type pathFacts struct {
	signed, uploaded, reused bool
	narSize, fileSize        int64
}

func newOutcomes(closure []*store.PathInfo, res *upload.Result) *outcomes {
	o := &outcomes{idx: make(map[string]int32, len(closure))}
	for _, pi := range closure {
		o.index(pi.Path)
	}
	o.refs = make([][]int32, len(o.paths), len(o.paths)+8)
	for _, pi := range closure {
		i := o.idx[pi.Path]
		if o.refs[i] != nil {
			continue // listed twice
		}
		rs := make([]int32, 0, len(pi.References))
		for _, r := range pi.References {
			rs = append(rs, o.index(r))
		}
		o.refs[i] = rs
	}
	signed := make(map[string]bool, len(res.SignedPaths))
	for _, p := range res.SignedPaths {
		signed[p] = true
	}
	o.failed = make([]error, len(o.paths))
	o.facts = make([]pathFacts, len(o.paths))
	for i, p := range o.paths {
		o.failed[i] = res.Failed[p]
		f := pathFacts{signed: signed[p]}
		if u, ok := res.Uploads[p]; ok {
			f.uploaded, f.reused, f.narSize, f.fileSize = true, u.ReusedNAR, u.NarSize, u.FileSize
		}
		o.facts[i] = f
	}
	o.seen = make([]uint32, len(o.paths))
	return o
}

// index returns p's index, adding p (with no references) if it is new.
func (o *outcomes) index(p string) int32 {
	if i, ok := o.idx[p]; ok {
		return i
	}
	i := int32(len(o.paths))
	o.idx[p] = i
	o.paths = append(o.paths, p)
	if o.refs != nil {
		o.refs = append(o.refs, nil)
	}
	return i
}

// root walks root's closure and returns a failed member (a permanent
// failure first), the closure's counts, and the member's error.
func (o *outcomes) root(root string) (failedPath string, c rootCounts, ferr error) {
	if _, ok := o.idx[root]; !ok {
		// Not in the batch's closure: counted alone, as its own closure.
		o.index(root)
		o.failed = append(o.failed, nil)
		o.facts = append(o.facts, pathFacts{})
		o.seen = append(o.seen, 0)
	}
	o.epoch++
	if o.epoch == 0 { // wrapped: clear the marks
		clear(o.seen)
		o.epoch = 1
	}
	r := o.idx[root]
	o.seen[r] = o.epoch
	o.stack = append(o.stack[:0], r)
	for len(o.stack) > 0 {
		i := o.stack[len(o.stack)-1]
		o.stack = o.stack[:len(o.stack)-1]
		if err := o.failed[i]; err != nil && (ferr == nil || (cache.IsPathPermanent(err) && !cache.IsPathPermanent(ferr))) {
			failedPath, ferr = o.paths[i], err
		}
		f := &o.facts[i]
		c.closure++
		if f.signed {
			c.signed++
		}
		if f.uploaded {
			c.uploaded++
			c.narBytes += f.narSize
			c.stored += f.fileSize
			if f.reused {
				c.reused++
			}
		}
		for _, j := range o.refs[i] {
			if o.seen[j] != o.epoch {
				o.seen[j] = o.epoch
				o.stack = append(o.stack, j)
			}
		}
	}
	return failedPath, c, ferr
}

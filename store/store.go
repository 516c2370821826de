package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/nar"
)

// PathInfo is what the local store knows about one valid path.
type PathInfo struct {
	Path             string   // full store path
	NarHash          nar.Hash // sha256 of the NAR serialisation
	NarSize          int64
	References       []string // full store paths, sorted; may include Path itself
	Deriver          string   // full path of the .drv, "" if unknown
	Sigs             []string
	CA               string
	RegistrationTime time.Time
	Ultimate         bool // built locally (not substituted)
}

// Registered is a path and when it became valid.
type Registered struct {
	Path string
	Time int64 // unix seconds, as Nix records it
	// Seq orders registrations: a later one always has a larger Seq (Nix's
	// ValidPaths row id, which is AUTOINCREMENT and never reused).
	Seq int64
}

// ErrNotValid is returned (wrapped) for a path the store does not have.
var ErrNotValid = errors.New("not a valid path in the local Nix store")

// Store is a read-only view of the local Nix store.
type Store interface {
	// PathInfos returns the info of each path; a path that is not valid
	// yields an error wrapping ErrNotValid naming it.
	PathInfos(ctx context.Context, paths []string) ([]*PathInfo, error)
	// Closure returns the infos of paths and everything they reference,
	// dependencies before dependents.
	Closure(ctx context.Context, paths []string) ([]*PathInfo, error)
	// DerivationOutputs returns the output paths a derivation (.drv) is
	// known to produce, valid or not.
	DerivationOutputs(ctx context.Context, drv string) ([]string, error)
	// ValidPaths returns the paths among paths that are valid, in order.
	ValidPaths(ctx context.Context, paths []string) ([]string, error)
	// RegisteredSince lists paths registered at or after unix time t, oldest
	// first. Backends that cannot answer return errors.ErrUnsupported.
	RegisteredSince(ctx context.Context, t int64) ([]Registered, error)
	// RegisteredAfter lists the paths registered after the one whose Seq
	// is seq, oldest first; LastSeq is the Seq of the newest registration
	// (0 for an empty store). Unlike RegisteredSince, neither reads more
	// than what is new. Backends that cannot answer return
	// errors.ErrUnsupported.
	RegisteredAfter(ctx context.Context, seq int64) ([]Registered, error)
	LastSeq(ctx context.Context) (int64, error)
	Close() error
}

// DefaultDB is where Nix keeps its database.
const DefaultDB = "/nix/var/nix/db/db.sqlite"

// ToStorePath resolves p (a store path, a path inside one, or a symlink such
// as ./result) to the top-level store path it belongs to.
func ToStorePath(p string) (string, error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	abs, err := filepath.Abs(resolved)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(abs, nar.StoreDir+"/")
	if !ok {
		return "", fmt.Errorf("%s is not in %s (it resolves to %s)", p, nar.StoreDir, abs)
	}
	base, _, _ := strings.Cut(rest, "/")
	sp, err := nar.ParseStorePath(nar.StoreDir + "/" + base)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return sp.String(), nil
}

// SortTopo orders infos so that every path comes after all the paths it
// references (self-references ignored). Ties keep path order, so the result
// is deterministic. References outside the set are ignored.
func SortTopo(infos []*PathInfo) []*PathInfo {
	byPath := make(map[string]*PathInfo, len(infos))
	for _, pi := range infos {
		byPath[pi.Path] = pi
	}
	sorted := slices.Clone(infos)
	slices.SortFunc(sorted, func(a, b *PathInfo) int { return strings.Compare(a.Path, b.Path) })
	out := make([]*PathInfo, 0, len(infos))
	state := make(map[string]uint8, len(infos)) // 1 = visiting, 2 = done
	// Iterative DFS: closures can be deep enough to make recursion a risk.
	type frame struct {
		pi   *PathInfo
		next int
	}
	for _, root := range sorted {
		if state[root.Path] != 0 {
			continue
		}
		stack := []frame{{pi: root}}
		state[root.Path] = 1
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next < len(top.pi.References) {
				ref := top.pi.References[top.next]
				top.next++
				dep, ok := byPath[ref]
				if !ok || ref == top.pi.Path || state[ref] != 0 {
					continue // outside the set, self, or already placed (a cycle cannot happen in a valid store)
				}
				state[ref] = 1
				stack = append(stack, frame{pi: dep})
				continue
			}
			state[top.pi.Path] = 2
			out = append(out, top.pi)
			stack = stack[:len(stack)-1]
		}
	}
	return out
}

// closureBFS expands roots through query, which returns infos for a batch of
// paths. Shared by both backends.
func closureBFS(ctx context.Context, roots []string, query func(context.Context, []string) ([]*PathInfo, error)) ([]*PathInfo, error) {
	seen := make(map[string]*PathInfo)
	frontier := slices.Compact(slices.Sorted(slices.Values(roots)))
	for len(frontier) > 0 {
		infos, err := query(ctx, frontier)
		if err != nil {
			return nil, err
		}
		for _, pi := range infos {
			seen[pi.Path] = pi
		}
		queued := make(map[string]bool)
		var next []string
		for _, pi := range infos {
			for _, r := range pi.References {
				if _, ok := seen[r]; !ok && !queued[r] {
					queued[r] = true
					next = append(next, r)
				}
			}
		}
		frontier = next
	}
	all := make([]*PathInfo, 0, len(seen))
	for _, pi := range seen {
		all = append(all, pi)
	}
	return SortTopo(all), nil
}

package lifecycle

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// Repair of the objects beside narinfos: realisations (.doi) and
// debug-info links. What the local store knows is written again, after
// the narinfo (and NAR) it points at; what it does not know is useless
// to clients and makes them fail, so it is deleted, which needs
// credentials that may delete (the gc user's).

// planSidecars plans the repair of realisation and debug-info problems.
// t retries; raw is the target as given (its capabilities). planned
// are the paths that already have an action; the actions it adds come
// back in the order they must run: pushes, then realisations and links,
// then deletions.
func planSidecars(ctx context.Context, t, raw cache.Target, problems []Problem, opts RepairOptions, plan *RepairPlan, planned map[string]bool) error {
	var pushes, writes, deletes []RepairAction
	del := &deleteCheck{t: raw}
	// deleteOr plans the deletion of key, or says why it cannot.
	deleteOr := func(key, kind, why string) error {
		ok, reason, err := del.can(ctx)
		if err != nil {
			return err
		}
		if !ok {
			plan.Unrepairable = append(plan.Unrepairable, fmt.Sprintf("%s: %s: %s, so it should go, but %s", key, kind, why, reason))
			return nil
		}
		deletes = append(deletes, RepairAction{Kind: ActionDelete, Objects: []string{key}, Problems: []string{kind}, Why: why})
		return nil
	}
	// needPush plans the push of path (valid locally) if the cache has no
	// narinfo for it.
	needPush := func(path, kind string) error {
		if planned[path] {
			return nil
		}
		sp, err := nar.ParseStorePath(path)
		if err != nil {
			return nil
		}
		there, err := t.Exists(ctx, sp.Hash+".narinfo")
		if err != nil {
			return fmt.Errorf("check %s.narinfo: %w", sp.Hash, err)
		}
		if !there {
			planned[path] = true
			pushes = append(pushes, RepairAction{Kind: ActionPush, StorePath: path, Problems: []string{kind}})
		}
		return nil
	}

	var links []Problem
	for _, p := range problems {
		switch p.Kind {
		case ProblemRealisation:
			if err := planRealisation(ctx, t, p.Key, opts, plan, &writes, needPush, deleteOr); err != nil {
				return err
			}
		case ProblemDebugInfo:
			links = append(links, p)
		}
	}
	if err := planLinks(ctx, t, links, opts, &writes, deleteOr); err != nil {
		return err
	}
	plan.Actions = append(plan.Actions, pushes...)
	plan.Actions = append(plan.Actions, writes...)
	plan.Actions = append(plan.Actions, deletes...)
	return nil
}

// planRealisation plans one realisations/<id>.doi that does not parse or
// whose outPath has no narinfo.
func planRealisation(ctx context.Context, t cache.Target, key string, opts RepairOptions, plan *RepairPlan, writes *[]RepairAction,
	needPush func(path, kind string) error, deleteOr func(key, kind, why string) error) error {
	id := strings.TrimSuffix(strings.TrimPrefix(key, nar.RealisationPrefix), ".doi")
	b, err := t.Get(ctx, key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil // gone since verify
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	old, perr := nar.ParseRealisation(b)
	if perr == nil && old.ID != id {
		old = nil // it answers for another realisation than its name says
	}
	if old != nil {
		// Parses: only its outPath's narinfo is missing. If the local
		// store has that path, pushing it repairs the realisation as it
		// is, signatures and all.
		out := nar.StoreDir + "/" + old.OutPath
		ok, err := opts.Store.ValidPaths(ctx, []string{out})
		if err != nil {
			return err
		}
		if len(ok) == 1 {
			return needPush(out, ProblemRealisation)
		}
	}
	var local *nar.Realisation
	if old != nil || checkRealisationKey(id) {
		rs, err := opts.lookupRealisations(ctx, []string{id})
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.ID == id {
				local = r
			}
		}
	}
	if local == nil {
		why := "the local store does not know this realisation"
		if old != nil {
			why = fmt.Sprintf("its outPath %s is neither cached nor in the local store, and the local store does not know this realisation", nar.StoreDir+"/"+old.OutPath)
		}
		return deleteOr(key, ProblemRealisation, why)
	}
	if old != nil && len(old.Signatures) > 0 && opts.Key == nil {
		r := Refusal{Key: key, Problems: []string{ProblemRealisation}}
		for _, s := range old.Signatures {
			n, _, _ := strings.Cut(s, ":")
			r.Signers = append(r.Signers, n)
		}
		plan.Refused = append(plan.Refused, r)
		return nil
	}
	out := nar.StoreDir + "/" + local.OutPath
	// Its outPath and those of its dependencies before it, as push has them.
	if err := needPush(out, ProblemRealisation); err != nil {
		return err
	}
	for _, id := range slices.Sorted(mapKeys(local.DependentRealisations)) {
		if err := needPush(nar.StoreDir+"/"+local.DependentRealisations[id], ProblemRealisation); err != nil {
			return err
		}
	}
	*writes = append(*writes, RepairAction{Kind: ActionRealisation, StorePath: out, Objects: []string{key}, Problems: []string{ProblemRealisation}, realisation: local, signed: opts.Key != nil})
	return nil
}

// checkRealisationKey reports whether id could name a realisation.
func checkRealisationKey(id string) bool {
	h, out, ok := strings.Cut(id, "!")
	return ok && strings.HasPrefix(h, "sha256:") && out != ""
}

func (o RepairOptions) lookupRealisations(ctx context.Context, ids []string) ([]*nar.Realisation, error) {
	if o.Realisations != nil {
		return o.Realisations(ctx, ids)
	}
	return store.RealisationsByID(ctx, o.Store, ids)
}

// debugMember is the file of a path that debuginfo/<key's id> stands
// for, as nar.Listing.DebugInfoLinks names them; "" if key is not one.
func debugMember(key string) string {
	id, ok := strings.CutPrefix(key, debugInfoPrefix)
	base, isDebug := strings.CutSuffix(id, ".debug")
	if !ok || !isDebug || len(base) != 40 || strings.Trim(base, "0123456789abcdef") != "" {
		return ""
	}
	return "lib/debug/.build-id/" + id[:2] + "/" + id[2:]
}

// hasMember reports whether the local path has the regular file member.
func hasMember(path, member string) bool {
	fi, err := os.Lstat(filepath.Join(path, member))
	return err == nil && fi.Mode().IsRegular()
}

// planLinks plans the debug-info links that do not parse or name a
// missing NAR: a cached path of the local store that has the debug file
// gets its links written again (once its NAR is restored by its own
// action); a link no such path explains is deleted.
func planLinks(ctx context.Context, t cache.Target, links []Problem, opts RepairOptions, writes *[]RepairAction, deleteOr func(key, kind, why string) error) error {
	if len(links) == 0 {
		return nil
	}
	byPath := map[string][]string{}
	var search []Problem // no path known: look through the local store
	for _, p := range links {
		member := debugMember(p.Key)
		if member == "" {
			if err := deleteOr(p.Key, p.Kind, "its name is not debuginfo/<build ID>.debug, so no store path has the file it stands for"); err != nil {
				return err
			}
			continue
		}
		if p.StorePath != "" && hasMember(p.StorePath, member) {
			if ok, err := opts.Store.ValidPaths(ctx, []string{p.StorePath}); err != nil {
				return err
			} else if len(ok) == 1 {
				byPath[p.StorePath] = append(byPath[p.StorePath], p.Key)
				continue
			}
		}
		search = append(search, p)
	}
	if len(search) > 0 {
		var members []string
		for _, p := range search {
			members = append(members, debugMember(p.Key))
		}
		found, err := pathsWithMembers(ctx, t, opts.Store, members)
		if err != nil {
			return err
		}
		for i, p := range search {
			if path := found[members[i]]; path != "" {
				byPath[path] = append(byPath[path], p.Key)
				continue
			}
			if err := deleteOr(p.Key, p.Kind, fmt.Sprintf("no cached path of the local store has %s", members[i])); err != nil {
				return err
			}
		}
	}
	for _, path := range slices.Sorted(mapKeys(byPath)) {
		keys := byPath[path]
		slices.Sort(keys)
		*writes = append(*writes, RepairAction{Kind: ActionDebugInfo, StorePath: path, Objects: keys, Problems: []string{ProblemDebugInfo}})
	}
	return nil
}

// pathsWithMembers finds, for each member, a valid local path that has
// it and whose narinfo is in the cache (the first by name): one pass
// over the store directory, a stat per path and member.
func pathsWithMembers(ctx context.Context, t cache.Target, st store.Store, members []string) (map[string]string, error) {
	ents, err := os.ReadDir(nar.StoreDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no local store: nothing here has the files
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nar.StoreDir, err)
	}
	cands := map[string][]string{}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || strings.HasSuffix(name, ".drv") {
			continue
		}
		if _, err := nar.ParseBaseName(name); err != nil {
			continue
		}
		path := nar.StoreDir + "/" + name
		for _, m := range members {
			if hasMember(path, m) {
				cands[m] = append(cands[m], path)
			}
		}
	}
	found := map[string]string{}
	for m, paths := range cands {
		valid, err := st.ValidPaths(ctx, paths)
		if err != nil {
			return nil, err
		}
		for _, p := range valid {
			sp, _ := nar.ParseStorePath(p)
			there, err := t.Exists(ctx, sp.Hash+".narinfo")
			if err != nil {
				return nil, fmt.Errorf("check %s.narinfo: %w", sp.Hash, err)
			}
			if there {
				found[m] = p
				break
			}
		}
	}
	return found, nil
}

// deleteCheck finds out once whether the target may delete.
type deleteCheck struct {
	t        cache.Target
	done, ok bool
	reason   string
}

// can reports whether objects can be deleted, or why not: a target
// without Delete, or credentials that may not (the writer's). A missing
// key deletes fine with permission, and is refused without, as gc
// probes.
func (d *deleteCheck) can(ctx context.Context) (bool, string, error) {
	if d.done {
		return d.ok, d.reason, nil
	}
	del, ok := d.t.(cache.Deleter)
	if !ok {
		d.done, d.reason = true, fmt.Sprintf("%s cannot delete; delete it through an s3:// or file:// URL", d.t)
		return false, d.reason, nil
	}
	err := probeDelete(ctx, del)
	if err != nil && !cache.IsConfig(err) {
		return false, "", fmt.Errorf("check that the credentials may delete: %w", err)
	}
	d.done, d.ok = true, err == nil
	if err != nil {
		d.reason = fmt.Sprintf("these credentials may not delete (%v): run verify --repair with the gc user's credentials (--credentials-file, the nixgc user of docs/operations.md), which may", err)
	}
	return d.ok, d.reason, nil
}

// writeRealisation writes a's realisation, signed by key on top of the
// local store's signatures, as push writes it.
func writeRealisation(ctx context.Context, t cache.Target, a RepairAction, key *nar.SecretKey) error {
	r := *a.realisation
	r.Signatures = slices.Clone(r.Signatures)
	if key != nil {
		r.Sign(key)
	}
	body, err := r.MarshalJSON()
	if err != nil {
		return err
	}
	if err := t.Put(ctx, r.Key(), bytes.NewReader(body), int64(len(body)), cache.TypeJSON); err != nil {
		return fmt.Errorf("write %s: %w", r.Key(), err)
	}
	return nil
}

// writeLinks writes every debug-info link of a's path from the local
// store, naming the NAR its narinfo in the cache names now (after the
// NAR and narinfo repairs), as push writes them. It returns how many.
func writeLinks(ctx context.Context, t cache.Target, a RepairAction) (int, error) {
	sp, err := nar.ParseStorePath(a.StorePath)
	if err != nil {
		return 0, err
	}
	ni, err := readNarInfo(ctx, t, sp.Hash)
	if err != nil {
		return 0, err
	}
	if ni == nil {
		return 0, errors.New("its narinfo is missing or unparsable, so the links would name no NAR")
	}
	if ok, err := t.Exists(ctx, ni.URL); err != nil {
		return 0, fmt.Errorf("check %s: %w", ni.URL, err)
	} else if !ok {
		return 0, fmt.Errorf("its NAR file %s is still missing", ni.URL)
	}
	parser := nar.NewParser()
	h := sha256.New()
	if err := nar.DumpPath(io.MultiWriter(h, parser), a.StorePath); err != nil {
		return 0, fmt.Errorf("list it: %w", err)
	}
	if !nar.NewSHA256(h.Sum(nil)).Equal(ni.NarHash) {
		return 0, errors.New("the local path is not the one its narinfo describes (NarHash differs)")
	}
	listing, err := parser.Listing()
	if err != nil {
		return 0, fmt.Errorf("list it: %w", err)
	}
	links := listing.DebugInfoLinks(ni.URL)
	for _, k := range a.Objects {
		if !slices.ContainsFunc(links, func(l nar.DebugInfoLink) bool { return l.Key == k }) {
			return 0, fmt.Errorf("it has no debug file for %s", k)
		}
	}
	for _, l := range links {
		if err := t.Put(ctx, l.Key, bytes.NewReader(l.Body), int64(len(l.Body)), cache.TypeJSON); err != nil {
			return 0, fmt.Errorf("write %s: %w", l.Key, err)
		}
	}
	return len(links), nil
}

// executeSidecars writes the realisations and links and deletes what
// the plan deletes, skipping what points at a path that failed. t
// retries; raw is the target as given.
func executeSidecars(ctx context.Context, t, raw cache.Target, plan *RepairPlan, res *RepairResult) error {
	var del []string
	for _, a := range plan.Actions {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch a.Kind {
		case ActionRealisation:
			k := a.Objects[0]
			failed := res.Failed[a.StorePath]
			for _, dep := range a.realisation.DependentRealisations {
				failed = cmp.Or(failed, res.Failed[nar.StoreDir+"/"+dep])
			}
			if failed != nil {
				res.Failed[k] = fmt.Errorf("%s: not written, its outPath could not be pushed: %w", k, failed)
				continue
			}
			if err := writeRealisation(ctx, t, a, plan.Key); err != nil {
				res.Failed[k] = err
				continue
			}
			res.Realisations++
		case ActionDebugInfo:
			if err := res.Failed[a.StorePath]; err != nil {
				res.Failed[a.StorePath] = fmt.Errorf("%s: debuginfo links not written: %w", a.StorePath, err)
				continue
			}
			n, err := writeLinks(ctx, t, a)
			if err != nil {
				res.Failed[a.StorePath] = fmt.Errorf("%s: write its debuginfo links: %w", a.StorePath, err)
				continue
			}
			res.Links += n
		case ActionDelete:
			del = append(del, a.Objects...)
		}
	}
	if len(del) == 0 {
		return nil
	}
	d, ok := t.(cache.Deleter)
	if _, rawOK := raw.(cache.Deleter); !ok || !rawOK {
		return fmt.Errorf("repair: %s cannot delete", raw)
	}
	if err := d.Delete(ctx, del); err != nil {
		for _, k := range del {
			res.Failed[k] = fmt.Errorf("delete %s: %w", k, err)
		}
		return nil
	}
	res.Deleted += len(del)
	return nil
}

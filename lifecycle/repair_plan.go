package lifecycle

// The vocabulary of a repair: the plan PlanRepair (repair.go) makes, its
// actions, refusals and options, and what ExecuteRepair reports.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// Repair actions.
const (
	// ActionNAR uploads the NAR file again at the URL the narinfo names,
	// from the local store, compressed the same way: the compressed bytes
	// hash to the narinfo's FileHash, so the narinfo (and its signatures)
	// stays as it is.
	ActionNAR = "nar"
	// ActionRewrite uploads the NAR file and then a new narinfo for the
	// path, signed with the repair key.
	ActionRewrite = "rewrite"
	// ActionPush uploads what the path's closure lacks (a missing
	// reference, a realisation's outPath), rewriting nothing that is
	// there.
	ActionPush = "push"
	// ActionRealisation writes realisations/<id>.doi again from the
	// local store's realisation, signed with the repair key, once its
	// outPath's narinfo is in the cache.
	ActionRealisation = "realisation"
	// ActionDebugInfo writes the path's debuginfo/<build ID> links again
	// from the local store, naming the NAR its narinfo names once the
	// NAR is restored.
	ActionDebugInfo = "debuginfo"
	// ActionDelete deletes objects the local store cannot replace and
	// clients fail on (a realisation or link nothing here explains).
	ActionDelete = "delete"
)

// RepairAction is one step of a repair.
type RepairAction struct {
	Kind      string   // ActionNAR, ActionRewrite, ActionPush, ActionRealisation, ActionDebugInfo or ActionDelete
	StorePath string   // ActionRealisation: its outPath; ActionDelete: ""
	URL       string   // ActionNAR: the NAR file written
	Problems  []string // the problem kinds it repairs
	// Objects are the keys a realisation, debug-info or delete action
	// repairs (.doi, debuginfo/<build ID>).
	Objects []string
	// OldSigs are the signatures of the narinfo in the cache today (kept
	// by a rewrite when the path's fingerprint is unchanged).
	OldSigs []string
	// Why says why a NAR problem needs a rewrite, not just the NAR, or
	// why an object is deleted.
	Why string

	spool       string // ActionNAR: the compressed NAR, made while planning
	size        int64
	realisation *nar.Realisation // ActionRealisation: the local store's
	signed      bool             // ActionRealisation: the repair key signs it
}

func (a RepairAction) String() string {
	what := strings.Join(a.Problems, ", ")
	switch a.Kind {
	case ActionNAR:
		return fmt.Sprintf("%s: upload its NAR file %s again from the local store (%s, hashing to the narinfo's FileHash); the narinfo and its signatures stay (%s)", a.StorePath, a.URL, HumanBytes(a.size), what)
	case ActionRewrite:
		s := fmt.Sprintf("%s: upload its NAR and then a new signed narinfo (%s)", a.StorePath, what)
		if a.Why != "" {
			s += ": " + a.Why
		}
		return s
	case ActionRealisation:
		how := "signed by the repair key"
		if !a.signed {
			how = "with the local store's signatures only (no signing key)"
		}
		return fmt.Sprintf("%s: write it again from the local store's realisation (outPath %s), %s, after its outPath's narinfo (%s)", strings.Join(a.Objects, ", "), a.StorePath, how, what)
	case ActionDebugInfo:
		return fmt.Sprintf("%s: write its debuginfo links again from the local store (%s), naming the NAR its narinfo names once that is restored (%s)", a.StorePath, strings.Join(a.Objects, ", "), what)
	case ActionDelete:
		return fmt.Sprintf("%s: delete it: %s; clients fail on it (%s)", strings.Join(a.Objects, ", "), a.Why, what)
	default:
		return fmt.Sprintf("%s: upload what its closure lacks (%s)", a.StorePath, what)
	}
}

// Refusal is a path repair will not touch without a signing key: its
// narinfo (or a realisation) is signed today and only a new one would
// repair it.
type Refusal struct {
	StorePath string
	Key       string // a realisation's key, instead of a path
	Problems  []string
	Signers   []string // key names on the narinfo today ("" : unsigned)
}

func (r Refusal) String() string {
	if r.Key != "" {
		return fmt.Sprintf("%s: %s: needs a new realisation, and the one in the cache is signed by %s: writing it unsigned would make clients with require-sigs reject it", r.Key, strings.Join(r.Problems, ", "), strings.Join(r.Signers, ", "))
	}
	if len(r.Signers) == 0 {
		return fmt.Sprintf("%s: %s: needs a new narinfo signed by a trusted key", r.StorePath, strings.Join(r.Problems, ", "))
	}
	return fmt.Sprintf("%s: %s: needs a new narinfo, and the one in the cache is signed by %s: rewriting it unsigned would make clients with require-sigs reject it and its dependents", r.StorePath, strings.Join(r.Problems, ", "), strings.Join(r.Signers, ", "))
}

// RepairPlan is what a repair would do. Refused non-empty means that it
// must not run at all: nothing is changed until every rewrite can be
// signed. Close removes the NAR files it spooled.
type RepairPlan struct {
	Actions []RepairAction
	Refused []Refusal
	// Unrepairable are problems this machine cannot repair (path not in
	// the local store, narinfo with no store path), one line each.
	Unrepairable []string
	Key          *nar.SecretKey
}

// Close removes the plan's temporary files.
func (p *RepairPlan) Close() {
	for _, a := range p.Actions {
		if a.spool != "" {
			os.Remove(a.spool)
		}
	}
}

// RepairOptions configure PlanRepair.
type RepairOptions struct {
	// Key signs every narinfo a repair writes; nil: none can be signed,
	// so a signed narinfo is never rewritten.
	Key *nar.SecretKey
	// TrustedKeys, if any, must include Key's public half.
	TrustedKeys []*nar.PublicKey
	Store       store.Store
	// Compression is how the command would compress (its level applies
	// when a narinfo names the same method).
	Compression compression.Options
	TempDir     string
	// Realisations looks realisations up by ID in the local store; nil:
	// store.RealisationsByID on Store.
	Realisations func(ctx context.Context, ids []string) ([]*nar.Realisation, error)
}

// ErrUntrustedKey is returned by PlanRepair for a key that is not among
// the trusted ones: what it signs, clients would reject.
var ErrUntrustedKey = errors.New("the signing key is not among --trusted-public-keys")

// RepairResult sums up an executed plan.
type RepairResult struct {
	NARs     int // NAR files uploaded under their old URL (ActionNAR)
	Uploaded int // paths uploaded by the pusher (rewrites, missing references)
	Present  int // paths of their closures already cached
	// Realisations and Links are the .doi files and debug-info links
	// written; Deleted the objects deleted.
	Realisations, Links, Deleted int
	// Failed is keyed by store path, or by object for a realisation or
	// deletion.
	Failed map[string]error
}

// readNarInfo reads hash's narinfo from a target that retries; nil if
// it is gone or unparsable.
func readNarInfo(ctx context.Context, t cache.Target, hash string) (*nar.NarInfo, error) {
	b, err := t.Get(ctx, hash+".narinfo")
	if errors.Is(err, cache.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ni, err := nar.ParseNarInfo(b)
	if err != nil {
		return nil, nil
	}
	return ni, nil
}

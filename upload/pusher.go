package upload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/cache/sema"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/internal/fsutil"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// Pusher uploads store paths to a Target so that the cache is valid at every
// instant: a path's NAR goes up before its narinfo, and its narinfo only
// after each of its references was seen in the cache by a request sent
// after the narinfo became ready (not only remembered from earlier). A
// reference found missing is uploaded again from the local store first.
//
// Work is done by a bounded pool fed in dependency order (leaves first):
// serialising and compressing take one of Jobs CPU slots, requests one of
// IOJobs network slots, and a path waiting on the network holds no CPU
// slot. Concurrent Push calls share paths in flight, existence answers and
// the cache lock.
type Pusher struct {
	Target     cache.Target
	Compressor *compression.Compressor
	Key        *nar.SecretKey // nil: unsigned
	Jobs       int            // NARs serialised and compressed at once; 0 = GOMAXPROCS
	IOJobs     int            // requests to the cache in flight; 0 = DefaultIOJobs
	TempDir    string         // where compressed NARs wait for upload; "" = os.TempDir()
	// MaxTempSize bounds the bytes of compressed NARs waiting in TempDir
	// at once; 0 = DefaultMaxTempSize. A NAR larger than the whole budget
	// still goes through, alone.
	MaxTempSize int64
	Retry       retry.Policy // for each object PUT and existence check
	Log         *slog.Logger
	// PresenceTTL is how long an answer "this narinfo is in the cache"
	// spares a path from being checked again; 0 = DefaultPresenceTTL.
	PresenceTTL time.Duration
	// Locker, if set, coordinates with gc (see lock.go): narinfos are
	// written only under a valid shared lock.
	Locker *cachelock.Locker
	// OnEvent, if set, is called (from many goroutines) as paths progress.
	OnEvent func(Event)
	// NarListings writes <hashpart>.ls, the JSON listing of each NAR
	// (Nix's write-nar-listing), after the NAR and before the narinfo.
	NarListings bool
	// DebugInfo writes debuginfo/<build-id> links for the debug files
	// under lib/debug/.build-id (Nix's index-debug-info), likewise.
	DebugInfo bool
	// CheckKey, if set, runs with the nix-cache-info check, before the
	// first path is signed (and again after CheckCache): the caller's
	// check that the cache accepts Key (a name it records with another
	// public key must not sign). Its error fails the Push.
	// It gets the target as the Pusher sends to it (retried, bounded).
	CheckKey func(ctx context.Context, t cache.Target) error
	// SignPresent makes a path "already cached" only if its narinfo has
	// a valid signature by Key: one that lacks it gets Key's signature
	// added (Result.Signed), or is named in Result.NotSigned.
	SignPresent bool
	// SignedMemoDir, if set, is where the Pusher remembers across runs
	// the cached narinfos it found or wrote signed by Key (signmemo.go),
	// so that a listing tells a later push they still are, unread.
	SignedMemoDir string
	// BuildLogDir, if set, is Nix's log directory (store.DefaultLogDir):
	// PushBuildLog uploads the build logs it keeps there as log/<drv>.
	BuildLogDir string
	// Realisations: callers upload the realisations (ca-derivations) of
	// what they pushed with PushRealisations (realisation.go).
	Realisations bool

	// NarBytes counts NAR bytes serialised so far, for progress displays.
	NarBytes atomic.Int64

	// dump serialises a path; nar.DumpPath unless a test replaces it.
	dump func(w io.Writer, path string) error

	initOnce sync.Once
	// t is Target as the Pusher sends to it: retried under Retry (cut
	// short by StopRetrying) around a bound of IOJobs requests in flight.
	t        cache.Target
	cpu      *semaphore.Weighted
	tmp      *semaphore.Weighted // bytes of TempDir
	smallNAR int64               // NARs up to this size compress in memory
	maxTemp  int64
	presence *Presence

	ioJobs int // IOJobs, or its default

	mu       sync.Mutex
	inflight map[string]*pathState // paths being uploaded by any Push call
	signed   signedSet             // cached narinfos known signed by Key (sign.go)
	memo     *signMemo             // the same, across runs (nil: no Key)

	// The shared lock: publishers hold sessMu for reading; renewing the
	// lock (after gc asked for the cache) holds it for writing.
	sessMu sync.RWMutex
	lockMu sync.Mutex // guards lock, gen, users
	lock   *cachelock.Lock
	gen    uint64 // lock sessions so far
	users  int    // Push calls that may publish

	cacheInfoOnce sync.Mutex
	cacheInfoOK   bool

	// stopped ends when StopRetrying is called: from then on a failed
	// request is not tried again.
	stopped    context.Context
	stopRetrys context.CancelFunc
}

// StopRetrying makes every failed request final from now on, and ends
// the waits between tries at once; requests in flight go on. The daemon
// calls it on SIGTERM, so that an unreachable cache does not hold the
// shutdown for the whole retry schedule.
func (p *Pusher) StopRetrying() {
	p.init()
	p.stopRetrys()
}

// primeMin is the number of unknown paths from which a listing of the
// cache replaces one existence check each.
const primeMin = 100

// Defaults for the Pusher's zero values.
const (
	DefaultIOJobs      = 32
	DefaultMaxTempSize = 4 << 30
	DefaultPresenceTTL = 10 * time.Minute
)

// EventKind says what happened to a path.
type EventKind int

const (
	EventPresent  EventKind = iota // already in the cache
	EventUploaded                  // narinfo written
	EventFailed
)

// Event reports one path's outcome.
type Event struct {
	Kind     EventKind
	Path     string
	NarSize  int64
	FileSize int64 // compressed size; 0 if the NAR file was already there
	Duration time.Duration
	Err      error
}

// Result sums up one Push.
type Result struct {
	Total    int   // paths in the closure
	Present  int   // already cached
	Uploaded int   // narinfos written, references re-uploaded included
	NarBytes int64 // of uploaded paths
	// FileBytes is what was stored (compressed), not counting NAR files
	// that were already present.
	FileBytes int64
	// ReusedNARs counts uploaded paths whose NAR file was already in the
	// cache (left by an interrupted upload, or shared by content): only
	// their narinfo was written, and they add nothing to FileBytes.
	ReusedNARs int
	Failed     map[string]error
	// Signed are cached paths whose narinfo lacked a valid signature by
	// the Key and got it (not in Present).
	Signed int
	// NotSigned are cached paths (in Present) whose narinfo lacks the
	// Key's signature and could not get it, with the reason.
	NotSigned map[string]string
	// SignedPaths are the Signed paths.
	SignedPaths []string
	// Uploads are the paths uploaded, by path: a root's own counts are
	// those of its closure's members.
	Uploads map[string]Upload
	// NarListings and DebugInfoLinks count the <hash>.ls listings and
	// debuginfo/<build-id> links written (NarListings, DebugInfo).
	NarListings, DebugInfoLinks int
}

// sidecarCounts are what putSidecars wrote for one NAR.
type sidecarCounts struct{ listings, debugInfoLinks int }

// Upload is what one path's upload stored.
type Upload struct {
	NarSize, FileSize int64
	ReusedNAR         bool // only its narinfo was written
}

// Outcomes of a Result add up: Present + Signed + Uploaded + len(Failed)
// + paths not attempted (a push that stopped) = Total.

// Err summarises the failures, or nil.
func (r *Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	var errs []error
	for _, err := range r.Failed {
		errs = append(errs, err)
	}
	word := "paths"
	if r.Total == 1 {
		word = "path"
	}
	return fmt.Errorf("%d of %d %s failed: %w", len(r.Failed), r.Total, word, errors.Join(errs...))
}

func (p *Pusher) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

func (p *Pusher) init() {
	p.initOnce.Do(func() {
		jobs := p.Jobs
		if jobs <= 0 {
			jobs = runtime.GOMAXPROCS(0)
		}
		ioJobs := p.IOJobs
		if ioJobs <= 0 {
			ioJobs = DefaultIOJobs
		}
		ttl := p.PresenceTTL
		if ttl <= 0 {
			ttl = DefaultPresenceTTL
		}
		p.maxTemp = p.MaxTempSize
		if p.maxTemp <= 0 {
			p.maxTemp = DefaultMaxTempSize
		}
		p.tmp = semaphore.NewWeighted(p.maxTemp)
		p.stopped, p.stopRetrys = context.WithCancel(context.Background())
		if p.smallNAR == 0 {
			p.smallNAR = smallNAR
		}
		p.cpu = semaphore.NewWeighted(int64(jobs))
		p.ioJobs = ioJobs
		p.t = p.Retry.Wrap(sema.Wrap(p.Target, semaphore.NewWeighted(int64(ioJobs))), p.stopped)
		p.presence = NewPresence(p.t, ttl)
		p.inflight = map[string]*pathState{}
		// A cache on this disk gives no ETags, and reading its narinfos
		// costs no request: no memo there.
		if l, local := p.Target.(cache.Local); p.Key != nil && !(local && l.IsLocal()) {
			p.memo = newSignMemo(p.SignedMemoDir, p.Target.String(), p.Key.Public().String())
		}
	})
}

// Requests reports how many existence requests the Pusher has sent.
func (p *Pusher) Requests() int64 {
	p.init()
	return p.presence.Requests.Load()
}

// PresenceStats returns the counters of the Pusher's existence checks
// (shared by all its Push calls), for metrics.
func (p *Pusher) PresenceStats() PresenceStats {
	p.init()
	return p.presence.Stats()
}

func (p *Pusher) emit(e Event) {
	if p.OnEvent != nil {
		p.OnEvent(e)
	}
}

// EnsureCacheInfo writes nix-cache-info if the cache has none.
func (p *Pusher) EnsureCacheInfo(ctx context.Context) error {
	p.init()
	p.cacheInfoOnce.Lock()
	defer p.cacheInfoOnce.Unlock()
	if p.cacheInfoOK {
		return nil
	}
	var ok bool
	ok, err := p.t.Exists(ctx, "nix-cache-info")
	if err != nil {
		return err
	}
	if !ok {
		err = p.t.Put(ctx, "nix-cache-info", bytes.NewReader([]byte(cache.CacheInfo)), int64(len(cache.CacheInfo)), cache.TypeCacheInfo)
		if err != nil {
			return err
		}
		p.log().Info("wrote nix-cache-info", "target", p.Target.String())
	}
	if p.CheckKey != nil {
		if err := p.CheckKey(ctx, p.t); err != nil {
			return err
		}
	}
	p.cacheInfoOK = true
	return nil
}

// CheckCache asks the cache again whether it holds nix-cache-info (and
// writes it if not): a cheap test that the target works now.
func (p *Pusher) CheckCache(ctx context.Context) error {
	p.cacheInfoOnce.Lock()
	p.cacheInfoOK = false
	p.cacheInfoOnce.Unlock()
	return p.EnsureCacheInfo(ctx)
}

// Missing returns the paths among infos whose narinfo is not in the cache.
// Answers younger than PresenceTTL count; the rest are asked, concurrently
// and once per path however many callers ask.
func (p *Pusher) Missing(ctx context.Context, infos []*store.PathInfo) ([]*store.PathInfo, error) {
	p.init()
	// Many paths not known yet: one listing may answer them all.
	if rl, ok := p.t.(cache.RootLister); ok && len(infos) >= primeMin {
		var unknown []string
		for _, pi := range infos {
			if key, err := narinfoKey(pi.Path); err == nil && !p.presence.Answered(key) {
				unknown = append(unknown, key)
			}
		}
		if len(unknown) >= primeMin {
			if _, err := p.presence.Prime(ctx, rl, unknown); err != nil {
				p.log().Debug("listing the cache failed; checking paths one by one", "err", err)
			}
		}
	}
	present := make([]bool, len(infos))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(int(max(p.IOJobs, DefaultIOJobs)) * 2) // waiting askers join queued requests
	// Recent's bound.
	bound := time.Now().Add(-p.presence.ttl)
	for i, pi := range infos {
		key, err := narinfoKey(pi.Path)
		if err != nil {
			return nil, &cache.PermanentError{Err: err}
		}
		if ok, answered := p.presence.remembered(key, bound); answered {
			present[i] = ok
			continue
		}
		g.Go(func() error {
			ok, err := p.presence.Recent(gctx, key)
			if err != nil {
				return fmt.Errorf("check %s: %w", pi.Path, err)
			}
			present[i] = ok
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var missing []*store.PathInfo
	for i, pi := range infos {
		if !present[i] {
			missing = append(missing, pi)
		} else {
			p.emit(Event{Kind: EventPresent, Path: pi.Path, NarSize: pi.NarSize})
		}
	}
	return missing, nil
}

// Push uploads every path of closure that the cache lacks. closure must
// contain the references of every path in it (as store.Closure returns).
// A path failing does not stop the others, only its dependents. The error
// is non-nil only when the whole push could not run (e.g. the cache is
// unreachable); per-path failures are in Result.Failed.
func (p *Pusher) Push(ctx context.Context, closure []*store.PathInfo) (*Result, error) {
	return p.PushForce(ctx, closure, nil)
}

// PushForce is Push, but uploads the paths of closure named in force even
// if the cache has them, NAR included, overwriting what is there: verify
// --repair uses it for a truncated NAR or a bad signature.
func (p *Pusher) PushForce(ctx context.Context, closure []*store.PathInfo, force []string) (*Result, error) {
	p.init()
	defer p.flushMemo()
	p.presence.Busy()
	defer p.presence.Done()
	res := &Result{Total: len(closure), Failed: map[string]error{}}
	if err := p.EnsureCacheInfo(ctx); err != nil {
		return res, err
	}
	missing, err := p.Missing(ctx, closure)
	if err != nil {
		return res, err
	}
	if len(force) > 0 {
		isMissing := map[string]bool{}
		for _, pi := range missing {
			isMissing[pi.Path] = true
		}
		for _, pi := range closure {
			if slices.Contains(force, pi.Path) && !isMissing[pi.Path] {
				if err := p.checkNotWeaker(ctx, pi); err != nil {
					res.Failed[pi.Path] = err
					continue
				}
				missing = append(missing, pi)
			}
		}
	}
	res.Present = len(closure) - len(missing) - len(res.Failed)
	if p.SignPresent && p.Key != nil {
		skip := map[string]bool{}
		for _, pi := range missing {
			skip[pi.Path] = true
		}
		var present []*store.PathInfo
		for _, pi := range closure {
			if !skip[pi.Path] && res.Failed[pi.Path] == nil {
				present = append(present, pi)
			}
		}
		signed, notSigned, err := p.signPresent(ctx, present)
		if err != nil {
			return res, err
		}
		res.Signed, res.NotSigned, res.SignedPaths = len(signed), notSigned, signed
		res.Present -= len(signed)
	}
	if len(missing) == 0 {
		return res, nil
	}
	p.enterSession()
	defer p.leaveSession()
	// Take the lock before the first NAR existence check, so that what
	// those checks see counts until the narinfos are written.
	if _, release, err := p.readSession(ctx); err != nil {
		return res, err
	} else {
		release()
	}
	r := newRun(ctx, p, closure, res)
	for _, f := range force {
		r.force[f] = true
	}
	r.start(store.SortTopo(missing))
	r.work()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// signPresent adds Key's signature to the cached narinfos of present
// that lack it (sign.go), under the cache lock.
func (p *Pusher) signPresent(ctx context.Context, present []*store.PathInfo) ([]string, map[string]string, error) {
	if p.Key == nil || !p.SignPresent || len(present) == 0 {
		return nil, nil, nil
	}
	s := presentSigner{t: p.t, key: p.Key, jobs: p.ioJobs, log: p.log(), known: &p.signed, memo: p.memo, listed: p.presence.ListedETag,
		session: func(ctx context.Context) (func(), error) {
			p.enterSession()
			_, release, err := p.readSession(ctx)
			if err != nil {
				p.leaveSession()
				return nil, err
			}
			return func() { release(); p.leaveSession() }, nil
		}}
	return s.sign(ctx, present)
}

// flushMemo saves what the memo learnt; failing only costs reads later.
func (p *Pusher) flushMemo() {
	if p.memo == nil {
		return
	}
	if err := p.memo.flush(); err != nil {
		p.log().Debug("not remembering signed narinfos", "err", err)
	}
}

// ErrWeaker is returned for a forced path whose narinfo in the cache
// carries signatures that the one the Pusher would write lacks.
var ErrWeaker = errors.New("would replace a signed narinfo by one with fewer signatures")

// checkNotWeaker refuses to overwrite pi's narinfo when, with no Key to
// sign, the new one would lack a signature the cache's one has: nothing
// the Pusher writes is weaker than what it replaces. With a Key the new
// narinfo is signed by it, and callers that want to keep other keys'
// signatures put them in pi.Sigs.
func (p *Pusher) checkNotWeaker(ctx context.Context, pi *store.PathInfo) error {
	if p.Key != nil {
		return nil
	}
	key, err := narinfoKey(pi.Path)
	if err != nil {
		return &cache.PermanentError{Err: err}
	}
	b, err := p.t.Get(ctx, key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: read the narinfo it would replace: %w", pi.Path, err)
	}
	old, err := nar.ParseNarInfo(b)
	if err != nil {
		return nil // garbage: nothing to weaken
	}
	for _, s := range old.Sigs {
		if !slices.Contains(pi.Sigs, s) {
			name, _, _ := strings.Cut(s, ":")
			return cache.Permanent(fmt.Errorf("%s: %w (signed by %s) and no signing key was given", pi.Path, ErrWeaker, name))
		}
	}
	return nil
}

// enterSession and leaveSession count the Push calls that may publish;
// the shared lock is released when the last one leaves.
func (p *Pusher) enterSession() {
	p.lockMu.Lock()
	p.users++
	p.lockMu.Unlock()
}

func (p *Pusher) leaveSession() {
	p.sessMu.Lock()
	defer p.sessMu.Unlock()
	p.lockMu.Lock()
	p.users--
	var lk *cachelock.Lock
	if p.users == 0 {
		lk, p.lock = p.lock, nil
	}
	p.lockMu.Unlock()
	if lk != nil {
		if err := lk.Release(context.Background()); err != nil {
			p.log().Warn("releasing the cache lock", "err", err)
		}
	}
}

func (p *Pusher) currentGen() uint64 {
	p.lockMu.Lock()
	defer p.lockMu.Unlock()
	return p.gen
}

// readSession returns with the shared lock valid and held for reading:
// nothing the caller publishes before calling release can race a gc
// sweep. It takes the lock first if needed, and steps aside for a gc that
// asked for the cache (which starts a new session: presence seen before
// counts for nothing).
func (p *Pusher) readSession(ctx context.Context) (uint64, func(), error) {
	if p.Locker == nil {
		return 0, func() {}, nil
	}
	for {
		p.sessMu.RLock()
		p.lockMu.Lock()
		lk, gen := p.lock, p.gen
		p.lockMu.Unlock()
		if lk != nil && lk.Valid() && !lk.Yielding() {
			return gen, p.sessMu.RUnlock, nil
		}
		p.sessMu.RUnlock()

		p.sessMu.Lock()
		p.lockMu.Lock()
		same := p.lock == lk
		p.lockMu.Unlock()
		if same {
			if lk != nil {
				if lk.Yielding() {
					p.log().Info("gc asked for the cache: pausing publication until it is done", "target", p.Target.String())
				}
				if err := lk.Release(ctx); err != nil {
					p.log().Warn("releasing the cache lock", "err", err)
				}
			}
			nl, err := p.Locker.Acquire(ctx, cachelock.Shared)
			if err != nil {
				p.lockMu.Lock()
				p.lock = nil
				p.lockMu.Unlock()
				p.sessMu.Unlock()
				return 0, nil, err
			}
			p.lockMu.Lock()
			p.lock = nl
			p.gen++
			p.lockMu.Unlock()
			p.presence.Reset()
		}
		p.sessMu.Unlock()
	}
}

// pathState is one path being uploaded by some Push; the others wait for
// it through waiters. Guarded by Pusher.mu.
type pathState struct {
	waiters []func(error)
}

// run is one Push's work: a node per path to upload (or to wait for,
// when another Push is uploading it), scheduled by dependency.
type run struct {
	ctx    context.Context
	p      *Pusher
	byPath map[string]*store.PathInfo
	res    *Result

	mu         sync.Mutex
	cond       *sync.Cond
	nodes      map[string]*node
	publishQ   []*node // NAR up, references published: ready to publish
	narQ       []*node // in dependency order
	narNext    int
	pending    int // nodes not finished
	reuploaded map[string]bool
	force      map[string]bool // upload the NAR even if present
	publishing int             // workers publishing now
	// groupCommit: the target syncs before each publication (a file://
	// cache), so publishers wait on the disk and share its syncs.
	groupCommit bool
}

type node struct {
	pi         *store.PathInfo
	own        *pathState // nil: another Push uploads it
	waiting    int        // references in this run not published yet
	dependents []*node
	narDone    bool
	narGen     uint64 // lock session of the NAR's existence check or upload
	info       *nar.NarInfo
	fileSize   int64
	narReused  bool // the last NAR upload found the file already there
	start      time.Time
	finished   bool
	rounds     int // times references were found missing
}

func newRun(ctx context.Context, p *Pusher, closure []*store.PathInfo, res *Result) *run {
	r := &run{ctx: ctx, p: p, res: res, nodes: map[string]*node{}, byPath: make(map[string]*store.PathInfo, len(closure)), reuploaded: map[string]bool{}, force: map[string]bool{}}
	r.cond = sync.NewCond(&r.mu)
	_, r.groupCommit = p.t.(cache.Barrierer)
	for _, pi := range closure {
		r.byPath[pi.Path] = pi
	}
	return r
}

// addNode returns the node for pi, making one (and claiming the path, or
// waiting on the Push that has it) if needed. r.mu is held.
func (r *run) addNode(pi *store.PathInfo) *node {
	n, _ := r.addNodeUnlessKnown(pi, false)
	return n
}

// addNodeUnlessKnown is addNode, except that with ifKnown a path that
// another Push has just published (remembered present, and no longer in
// flight) gets no node: it reports present instead. The check and the
// claim are one step under Pusher.mu, as finish marks and releases.
func (r *run) addNodeUnlessKnown(pi *store.PathInfo, ifKnown bool) (*node, bool) {
	if n := r.nodes[pi.Path]; n != nil && !n.finished {
		return n, false
	}
	r.p.mu.Lock()
	if ifKnown && r.p.inflight[pi.Path] == nil {
		if key, _ := narinfoKey(pi.Path); r.p.presence.Known(key) {
			r.p.mu.Unlock()
			return nil, true
		}
	}
	n := &node{pi: pi}
	r.nodes[pi.Path] = n
	r.pending++
	if st := r.p.inflight[pi.Path]; st != nil {
		st.waiters = append(st.waiters, func(err error) { r.externalDone(n, err) })
	} else {
		n.own = &pathState{}
		r.p.inflight[pi.Path] = n.own
		r.narQ = append(r.narQ, n)
	}
	r.p.mu.Unlock()
	return n, false
}

// start makes the nodes of missing (dependency order) and links them.
// A path another Push published since Missing looked is present now.
func (r *run) start(missing []*store.PathInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pi := range missing {
		if _, present := r.addNodeUnlessKnown(pi, !r.force[pi.Path]); present {
			r.res.Present++
		}
	}
	for _, pi := range missing {
		n := r.nodes[pi.Path]
		if n == nil || n.own == nil {
			continue
		}
		for _, ref := range pi.References {
			if rn := r.nodes[ref]; rn != nil && ref != pi.Path {
				n.waiting++
				rn.dependents = append(rn.dependents, n)
			}
		}
	}
}

// work runs the pool until every node is finished or the context ends;
// unfinished nodes then fail with the context's error.
func (r *run) work() {
	r.mu.Lock()
	owned := len(r.narQ)
	r.mu.Unlock()
	workers := min(max(r.p.IOJobs, DefaultIOJobs), owned+1)
	stop := context.AfterFunc(r.ctx, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				batch, publish := r.next()
				if batch == nil {
					return
				}
				if publish {
					r.publish(batch)
					r.mu.Lock()
					r.publishing--
					r.cond.Broadcast()
					r.mu.Unlock()
				} else {
					r.uploadNAR(batch[0])
				}
			}
		}()
	}
	wg.Wait()
	if err := r.ctx.Err(); err != nil {
		r.mu.Lock()
		var left []*node
		for _, n := range r.nodes {
			if !n.finished {
				left = append(left, n)
			}
		}
		r.mu.Unlock()
		for _, n := range left {
			r.fail(n, err)
		}
	}
}

// next blocks until there is work (publishing first: it is cheap and
// unblocks dependents), or returns nil when there is none left.
func (r *run) next() ([]*node, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.pending == 0 || r.ctx.Err() != nil {
			return nil, false
		}
		// Everything ready is published together: one set of checks,
		// one sync to disk for a file:// cache. With syncs, a second
		// publisher starts only for a full batch: the others keep
		// serialising NARs while one waits on the disk, and the ready
		// paths gather into the next batch instead of each worker
		// waiting on a sync with a handful.
		if len(r.publishQ) > 0 && (!r.groupCommit || r.publishing == 0 || len(r.publishQ) >= publishBatch) {
			k := min(len(r.publishQ), publishBatch)
			batch := slices.Clone(r.publishQ[:k])
			r.publishQ = r.publishQ[k:]
			r.publishing++
			return batch, true
		}
		if r.narNext < len(r.narQ) {
			n := r.narQ[r.narNext]
			r.narQ[r.narNext] = nil
			r.narNext++
			return []*node{n}, false
		}
		r.cond.Wait()
	}
}

// publishBatch is the most narinfos one worker publishes at once.
const publishBatch = 256

func (r *run) uploadNAR(n *node) {
	if n.start.IsZero() {
		n.start = time.Now()
	}
	var sc sidecarCounts
	info, fileSize, gen, err := r.p.uploadNAR(r.ctx, n.pi, r.force[n.pi.Path], &sc)
	if err != nil {
		r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, err))
		return
	}
	r.mu.Lock()
	r.res.NarListings += sc.listings
	r.res.DebugInfoLinks += sc.debugInfoLinks
	n.narDone, n.info, n.narGen = true, info, gen
	n.fileSize += fileSize
	n.narReused = fileSize == 0
	if n.waiting == 0 {
		r.publishQ = append(r.publishQ, n)
		r.cond.Signal()
	}
	r.mu.Unlock()
}

// publish writes the narinfos of batch, each once every one of its
// references is in the cache now. A missing reference is uploaded again
// from the local store first, and its dependents wait for it.
func (r *run) publish(batch []*node) {
	p := r.p
	for len(batch) > 0 {
		gen, release, err := p.readSession(r.ctx)
		if err != nil {
			for _, n := range batch {
				r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, err))
			}
			return
		}
		readyAt := time.Now()
		present, err := r.checkRefs(batch, readyAt)
		if err != nil {
			release()
			for _, n := range batch {
				r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, err))
			}
			return
		}
		ok := make([]bool, len(batch))
		var g errgroup.Group
		g.SetLimit(64)
		for i, n := range batch {
			g.Go(func() error {
				ok[i] = r.prepare(n, gen, readyAt, present)
				return nil
			})
		}
		g.Wait()
		var ready []*node
		for i, n := range batch {
			if ok[i] {
				ready = append(ready, n)
			}
		}
		if len(ready) > 0 && p.Locker != nil && !p.lockValid() {
			release()
			batch = ready // the lock lapsed while we checked: again
			continue
		}
		if b, isB := p.t.(cache.Barrierer); isB && len(ready) > 0 {
			if err := b.Barrier(r.ctx); err != nil {
				release()
				for _, n := range ready {
					r.fail(n, fmt.Errorf("upload %s: sync the cache to disk: %w", n.pi.Path, err))
				}
				return
			}
		}
		errs := make([]error, len(ready))
		for i, n := range ready {
			g.Go(func() error {
				errs[i] = p.writeNarInfo(r.ctx, n.pi, n.info)
				return nil
			})
		}
		g.Wait()
		release()
		for i, n := range ready {
			if errs[i] != nil {
				r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, errs[i]))
				continue
			}
			if n.fileSize == 0 && n.narReused {
				// Say what happened: only the narinfo was written.
				p.log().Info("uploaded narinfo; its NAR file was already in the cache", "STORE_PATH", n.pi.Path, "nar_size", n.pi.NarSize, "stored_bytes", 0,
					"duration", time.Since(n.start).Round(time.Millisecond), "url", n.info.URL)
			} else {
				msg := "uploaded"
				if key, _ := narinfoKey(n.pi.Path); p.presence.Lost(key) {
					// An expiry rule, a gc or a hand deleted it.
					msg = "uploaded again; the cache had lost it"
				}
				p.log().Info(msg, "STORE_PATH", n.pi.Path, "nar_size", n.pi.NarSize, "file_size", n.fileSize,
					"duration", time.Since(n.start).Round(time.Millisecond), "url", n.info.URL)
			}
			r.succeed(n)
		}
		return
	}
}

// prepare checks, under the lock session gen, that n's references (and,
// from an older session, its NAR) are in the cache now. When they are
// not, it arranges for them (or fails n) and returns false.
func (r *run) prepare(n *node, gen uint64, readyAt time.Time, present map[string]bool) bool {
	missing, err := missingRefs(n, present)
	if err != nil {
		r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, err))
		return false
	}
	if len(missing) > 0 {
		r.reupload(n, missing)
		return false
	}
	if gen != n.narGen {
		// The NAR was seen or written in an earlier lock session: a gc
		// may have run since.
		ok, err := r.p.presence.Check(r.ctx, n.info.URL, readyAt)
		if err != nil {
			r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, err))
			return false
		}
		if !ok {
			r.mu.Lock()
			n.narDone = false
			r.narQ = append(r.narQ, n)
			r.cond.Signal()
			r.mu.Unlock()
			return false
		}
	}
	return true
}

func (p *Pusher) lockValid() bool {
	p.lockMu.Lock()
	lk := p.lock
	p.lockMu.Unlock()
	return lk != nil && lk.Valid()
}

// refsOf lists n's references, itself excluded.
func refsOf(n *node) []string {
	refs := make([]string, 0, len(n.pi.References))
	for _, ref := range n.pi.References {
		if ref != n.pi.Path {
			refs = append(refs, ref)
		}
	}
	return refs
}

// checkRefs asks, with requests sent after readyAt, which references of
// the batch's nodes the cache has: one question for the whole batch, so
// that references shared by several dependents are asked about once.
//
// A reference whose narinfo this process wrote during the pushes going on
// now, in this lock session, is present without asking, as a NAR written
// in this session is (prepare): a gc under the lock starts a new session,
// and what deletes objects without our lock (an expiry rule) takes
// objects days old. What a push found cached, or wrote before a moment
// with no push going on, is asked about: that is what an expiry rule
// deletes (Presence.Written).
func (r *run) checkRefs(batch []*node, readyAt time.Time) (map[string]bool, error) {
	seen := map[string]bool{}
	out := map[string]bool{}
	var keys []string
	for _, n := range batch {
		for _, ref := range refsOf(n) {
			key, err := narinfoKey(ref)
			if err != nil || seen[key] {
				continue // prepare fails n for a bad reference
			}
			seen[key] = true
			if r.p.presence.Written(key) {
				out[key] = true
				continue
			}
			keys = append(keys, key)
		}
	}
	present, err := r.p.presence.CheckMany(r.ctx, keys, readyAt)
	if err != nil {
		return nil, fmt.Errorf("check references: %w", err)
	}
	for i, k := range keys {
		out[k] = present[i]
	}
	return out, nil
}

// missingRefs returns n's references that present says the cache lacks.
func missingRefs(n *node, present map[string]bool) ([]string, error) {
	var missing []string
	for _, ref := range refsOf(n) {
		key, err := narinfoKey(ref)
		if err != nil {
			return nil, &cache.PermanentError{Err: fmt.Errorf("reference %s: %w", ref, err)}
		}
		if !present[key] {
			missing = append(missing, ref)
		}
	}
	return missing, nil
}

// reupload makes n wait for refs, which the cache lost, to be uploaded
// again from the local store.
func (r *run) reupload(n *node, refs []string) {
	r.mu.Lock()
	n.rounds++
	if n.rounds > 3 {
		r.mu.Unlock()
		r.fail(n, fmt.Errorf("upload %s: reference %s keeps disappearing from the cache (deleted again after each re-upload); is an expiry rule or another gc deleting fresh objects?", n.pi.Path, refs[0]))
		return
	}
	var absent []string
	for _, ref := range refs {
		pi := r.byPath[ref]
		if pi == nil {
			absent = append(absent, ref)
			continue
		}
		if !r.reuploaded[ref] && !r.isNodeOf(ref) {
			r.reuploaded[ref] = true
			r.res.Present--
		}
		rn := r.addNode(pi)
		n.waiting++
		rn.dependents = append(rn.dependents, n)
		r.p.log().Warn("reference missing from the cache; uploading it again first", "STORE_PATH", ref, "dependent", n.pi.Path)
	}
	r.cond.Broadcast()
	r.mu.Unlock()
	if len(absent) > 0 {
		r.fail(n, fmt.Errorf("upload %s: reference %s is missing from the cache and not in the local store's closure; push it from a machine that has it", n.pi.Path, absent[0]))
	}
}

// isNodeOf reports whether ref was already part of this run's uploads
// (so not counted as present). r.mu is held.
func (r *run) isNodeOf(ref string) bool {
	_, ok := r.nodes[ref]
	return ok
}

func (r *run) succeed(n *node) {
	r.mu.Lock()
	if n.finished {
		r.mu.Unlock()
		return
	}
	r.res.Uploaded++
	r.res.NarBytes += n.pi.NarSize
	r.res.FileBytes += n.fileSize
	reused := n.fileSize == 0 && n.narReused
	if reused {
		r.res.ReusedNARs++
	}
	if r.res.Uploads == nil {
		r.res.Uploads = map[string]Upload{}
	}
	r.res.Uploads[n.pi.Path] = Upload{NarSize: n.pi.NarSize, FileSize: n.fileSize, ReusedNAR: reused}
	n.info = nil // memory follows the paths in flight, not the closure
	waiters := r.finish(n, nil)
	r.mu.Unlock()
	r.p.emit(Event{Kind: EventUploaded, Path: n.pi.Path, NarSize: n.pi.NarSize, FileSize: n.fileSize, Duration: time.Since(n.start)})
	for _, w := range waiters {
		w(nil)
	}
}

// fail finishes n and, transitively, the dependents waiting for it.
func (r *run) fail(n *node, err error) {
	r.mu.Lock()
	type item struct {
		n   *node
		err error
	}
	var events []Event
	var notify []func()
	stack := []item{{n, err}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.n.finished {
			continue
		}
		deps := it.n.dependents
		it.n.dependents = nil
		if it.n.own != nil || it.n.pi != nil {
			r.res.Failed[it.n.pi.Path] = it.err
		}
		if it.n.own != nil {
			events = append(events, Event{Kind: EventFailed, Path: it.n.pi.Path, Err: it.err, Duration: time.Since(it.n.start)})
		}
		for _, w := range r.finish(it.n, it.err) {
			notify = append(notify, func() { w(it.err) })
		}
		for _, d := range deps {
			stack = append(stack, item{d, fmt.Errorf("upload %s: reference %s was not uploaded", d.pi.Path, it.n.pi.Path)})
		}
	}
	r.mu.Unlock()
	for _, e := range events {
		r.p.emit(e)
	}
	for _, f := range notify {
		f()
	}
}

// finish marks n done, releases its claim and wakes its dependents on
// success. It returns the other Pushes' waiters to call once r.mu is
// released. r.mu is held.
func (r *run) finish(n *node, err error) []func(error) {
	n.finished = true
	r.pending--
	var waiters []func(error)
	if n.own != nil {
		r.p.mu.Lock()
		if err == nil {
			key, _ := narinfoKey(n.pi.Path)
			r.p.presence.Mark(key, true)
		}
		if r.p.inflight[n.pi.Path] == n.own {
			delete(r.p.inflight, n.pi.Path)
		}
		waiters = n.own.waiters
		n.own.waiters = nil
		r.p.mu.Unlock()
	}
	if err == nil {
		for _, d := range n.dependents {
			d.waiting--
			if d.waiting == 0 && d.narDone && !d.finished {
				r.publishQ = append(r.publishQ, d)
			}
		}
		n.dependents = nil
	}
	r.cond.Broadcast()
	return waiters
}

// externalDone is called when another Push finishes a path this run
// waits for.
func (r *run) externalDone(n *node, err error) {
	if err != nil {
		r.fail(n, fmt.Errorf("upload %s: %w", n.pi.Path, err))
		return
	}
	r.mu.Lock()
	if !n.finished {
		if !r.reuploaded[n.pi.Path] {
			r.res.Present++
		}
		r.finish(n, nil)
	}
	r.mu.Unlock()
}

// writeNarInfo signs and writes pi's narinfo; the caller has checked
// its references and, for a cache.Barrierer, synced.
func (p *Pusher) writeNarInfo(ctx context.Context, pi *store.PathInfo, info *nar.NarInfo) error {
	if p.Key == nil {
		// Unsigned: the narinfo found missing may have been written since
		// (by a signing writer); never replace it by a weaker one. One
		// read per narinfo, paid only by unsigned pushers.
		if err := p.checkNotWeaker(ctx, pi); errors.Is(err, ErrWeaker) {
			p.log().Info("not writing an unsigned narinfo over the signed one written meanwhile", "STORE_PATH", pi.Path)
			return nil
		} else if err != nil {
			return err
		}
	}
	if p.Key != nil {
		info.Sigs = slices.DeleteFunc(info.Sigs, func(s string) bool { return strings.HasPrefix(s, p.Key.Name+":") })
		info.Sign(p.Key)
	}
	text, err := info.MarshalText()
	if err != nil {
		return err
	}
	key, _ := narinfoKey(pi.Path)
	if err := p.t.Put(ctx, key, bytes.NewReader(text), int64(len(text)), cache.TypeNarInfo); err != nil {
		return err
	}
	// Still in the lock session the caller holds: a gc's new session
	// forgets it (Reset).
	p.presence.MarkWritten(key)
	if p.Key != nil {
		// Signed by Key: a later batch that finds it cached need not
		// read it back to know, nor a later run that lists it unchanged.
		p.signed.add(pi.Path)
		p.memo.add(key, text)
	}
	return nil
}

// countingHash is a hash.Hash that also counts what it sees.
type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return c.Hash.Write(b)
}

// counter feeds the Pusher's progress counter.
type counter struct{ n *atomic.Int64 }

func (c counter) Write(b []byte) (int, error) { c.n.Add(int64(len(b))); return len(b), nil }

// uploadNAR serialises, verifies, compresses and uploads pi's NAR, and
// returns the (unsigned) narinfo describing it with the lock session in
// which the NAR was seen in the cache. The compressed file is spooled to
// disk so that memory stays flat in NAR size and a retried PUT does not
// compress again. Serialising and compressing hold a CPU slot; the
// requests hold network slots only.
func (p *Pusher) uploadNAR(ctx context.Context, pi *store.PathInfo, force bool, sc *sidecarCounts) (*nar.NarInfo, int64, uint64, error) {
	if pi.NarSize > 0 && pi.NarSize <= p.smallNAR {
		// Small NARs (most paths of a system) compress in memory: a temp
		// file would cost more syscalls than the NAR has bytes.
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer bufPool.Put(buf)
		if err := p.cpu.Acquire(ctx, 1); err != nil {
			return nil, 0, 0, err
		}
		info, listing, err := p.compressNAR(ctx, pi, buf)
		p.cpu.Release(1)
		if err != nil {
			return nil, 0, 0, err
		}
		return p.putNARAndSidecars(ctx, pi, info, listing, bytes.NewReader(buf.Bytes()), force, sc)
	}
	// Reserve temp space first, holding nothing else: compressed output is
	// at most a little more than the NAR.
	need := min(pi.NarSize+pi.NarSize/64+64<<10, p.maxTemp)
	if err := p.tmp.Acquire(ctx, need); err != nil {
		return nil, 0, 0, err
	}
	defer p.tmp.Release(need)
	dir := p.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	if free, err := fsutil.FreeSpace(dir); err == nil && free < need {
		return nil, 0, 0, fmt.Errorf("not enough free space in %s for the compressed NAR (%d bytes free, up to %d needed): free some space, or point --temp-dir at a bigger disk", dir, free, need)
	}
	tmp, err := os.CreateTemp(p.TempDir, "nixpushd-*"+p.Compressor.Ext())
	if err != nil {
		return nil, 0, 0, fmt.Errorf("temporary file: %w (set --temp-dir to a writable directory)", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	if err := p.cpu.Acquire(ctx, 1); err != nil {
		return nil, 0, 0, err
	}
	info, listing, err := p.compressNAR(ctx, pi, tmp)
	p.cpu.Release(1)
	if err != nil {
		return nil, 0, 0, err
	}
	return p.putNARAndSidecars(ctx, pi, info, listing, tmp, force, sc)
}

// putNARAndSidecars uploads the NAR (see putNAR) and, once it is in the
// cache, the files that describe it (the .ls listing, the debug-info
// links), before any narinfo can point at it: a reader never finds them
// without their NAR, and the narinfo waits for one small PUT round.
func (p *Pusher) putNARAndSidecars(ctx context.Context, pi *store.PathInfo, info *nar.NarInfo, listing *nar.Listing, body io.ReaderAt, force bool, sc *sidecarCounts) (*nar.NarInfo, int64, uint64, error) {
	info, fileSize, gen, err := p.putNAR(ctx, info, body, force)
	if err == nil && listing != nil {
		err = p.putSidecars(ctx, pi, info, listing, sc)
	}
	if err != nil {
		return nil, 0, 0, err
	}
	return info, fileSize, gen, nil
}

// putSidecars writes pi's .ls and debug-info links from its listing, and
// adds them to sc once all are written.
func (p *Pusher) putSidecars(ctx context.Context, pi *store.PathInfo, info *nar.NarInfo, listing *nar.Listing, sc *sidecarCounts) error {
	type object struct {
		key  string
		body []byte
	}
	var objs []object
	var written sidecarCounts
	if p.NarListings {
		sp, err := nar.ParseStorePath(pi.Path)
		if err != nil {
			return cache.Permanent(err)
		}
		body, err := listing.MarshalJSON()
		if err != nil {
			return err
		}
		objs = append(objs, object{sp.Hash + ".ls", body})
		written.listings++
	}
	if p.DebugInfo {
		// Written even when present (Nix skips existing ones): the link
		// then names the NAR that is in the cache now.
		for _, l := range listing.DebugInfoLinks(info.URL) {
			objs = append(objs, object{l.Key, l.Body})
			written.debugInfoLinks++
		}
	}
	var g errgroup.Group
	for _, o := range objs {
		g.Go(func() error {
			// Plain JSON, no Content-Encoding: a file:// cache has no
			// headers to carry one, a compressed body without the header
			// breaks readers (nix-index), and listings are small.
			err := p.t.Put(ctx, o.key, bytes.NewReader(o.body), int64(len(o.body)), cache.TypeJSON)
			if err != nil {
				return fmt.Errorf("write %s: %w", o.key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	sc.listings += written.listings
	sc.debugInfoLinks += written.debugInfoLinks
	return nil
}

// smallPut is the largest compressed NAR sent without asking first
// whether the cache has it.
const smallPut = 64 << 10

// smallNAR is the largest NAR compressed in memory rather than in a file.
const smallNAR = 1 << 20

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putNAR uploads the compressed NAR in body unless the cache has it.
func (p *Pusher) putNAR(ctx context.Context, info *nar.NarInfo, body io.ReaderAt, force bool) (*nar.NarInfo, int64, uint64, error) {
	var err error
	// The NAR file is content-addressed: if it is there, it is this file.
	gen := p.currentGen()
	exists := false
	// A small NAR costs about as much to send as to ask about, and a path
	// whose narinfo is missing rarely has its NAR there: just send it.
	if !force && info.FileSize > smallPut {
		exists, err = p.presence.Check(ctx, info.URL, time.Now())
		if err != nil {
			return nil, 0, 0, err
		}
	}
	if exists {
		return info, 0, gen, nil
	}
	err = p.t.Put(ctx, info.URL, io.NewSectionReader(body, 0, info.FileSize), info.FileSize, cache.TypeNAR)
	if err != nil {
		return nil, 0, 0, err
	}
	if info.FileSize > smallPut {
		p.presence.Mark(info.URL, true) // small ones are never asked about
	}
	return info, info.FileSize, gen, nil
}

// compressNAR writes pi's compressed NAR to tmp and describes it.
func (p *Pusher) compressNAR(ctx context.Context, pi *store.PathInfo, tmp io.Writer) (*nar.NarInfo, *nar.Listing, error) {
	fileHash := &countingHash{Hash: sha256.New()}
	narHash := &countingHash{Hash: sha256.New()}
	zw, err := p.Compressor.NewWriter(io.MultiWriter(tmp, fileHash))
	if err != nil {
		return nil, nil, err
	}
	dump := p.dump
	if dump == nil {
		dump = nar.DumpPath
	}
	sinks := []io.Writer{narHash, zw, counter{&p.NarBytes}}
	var parser *nar.Parser
	if p.NarListings || p.DebugInfo {
		// The listing is parsed from the stream as it passes: the path
		// is read once.
		parser = nar.NewParser()
		sinks = append(sinks, listingSink{parser})
	}
	dumpErr := dump(&ctxWriter{ctx: ctx, w: io.MultiWriter(sinks...)}, pi.Path)
	closeErr := zw.Close()
	switch {
	case dumpErr != nil && ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case dumpErr != nil && errors.Is(dumpErr, fs.ErrNotExist):
		return nil, nil, cache.Permanent(fmt.Errorf("%w (garbage-collected before upload?): %v", ErrGone, dumpErr))
	case dumpErr != nil:
		return nil, nil, dumpErr
	case closeErr != nil:
		return nil, nil, fmt.Errorf("compress: %w", closeErr)
	}
	got := nar.NewSHA256(narHash.Sum(nil))
	if !got.Equal(pi.NarHash) || (pi.NarSize != 0 && narHash.n != pi.NarSize) {
		return nil, nil, cache.Permanent(fmt.Errorf("%w: the store registered %s (%d bytes) but the contents hash to %s (%d bytes); the path was modified after it was built, repair it with `nix-store --repair-path %s`",
			ErrCorrupt, pi.NarHash, pi.NarSize, got, narHash.n, pi.Path))
	}
	fh := nar.NewSHA256(fileHash.Sum(nil))
	info := &nar.NarInfo{
		StorePath:   pi.Path,
		URL:         "nar/" + nar.NixBase32.EncodeToString(fh.Digest) + p.Compressor.Ext(),
		Compression: p.Compressor.Method,
		FileHash:    fh,
		FileSize:    fileHash.n,
		NarHash:     pi.NarHash,
		NarSize:     narHash.n, // equal to pi.NarSize, which old databases may lack
		Sigs:        append([]string(nil), pi.Sigs...),
		CA:          pi.CA,
	}
	for _, r := range pi.References {
		sp, err := nar.ParseStorePath(r)
		if err != nil {
			return nil, nil, &cache.PermanentError{Err: fmt.Errorf("reference %s: %w", r, err)}
		}
		info.References = append(info.References, sp.Base())
	}
	if pi.Deriver != "" {
		if sp, err := nar.ParseStorePath(pi.Deriver); err == nil {
			info.Deriver = sp.Base()
		}
	}
	var listing *nar.Listing
	if parser != nil {
		if listing, err = parser.Listing(); err != nil {
			// The hash matched, so this is a parser bug: the path still
			// goes up, without its listing.
			p.log().Warn("cannot list the NAR; uploading it without .ls and debuginfo links", "STORE_PATH", pi.Path, "error", err)
			listing = nil
		}
	}
	return info, listing, nil
}

// listingSink feeds the parser but never fails the dump: a parse error
// is reported once the NAR is complete (see compressNAR).
type listingSink struct{ p *nar.Parser }

func (l listingSink) Write(b []byte) (int, error) {
	l.p.Write(b)
	return len(b), nil
}

// ctxWriter stops a long serialisation promptly when the context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}

// PublishReferring writes key (a pin, say) once every store path in refs
// has its narinfo in the cache, checked now and under the cache lock, so
// that no gc can sweep between the check and the write.
func (p *Pusher) PublishReferring(ctx context.Context, key string, body []byte, contentType string, refs []string) error {
	p.init()
	p.enterSession()
	defer p.leaveSession()
	for {
		_, release, err := p.readSession(ctx)
		if err != nil {
			return err
		}
		readyAt := time.Now()
		keys := make([]string, len(refs))
		for i, ref := range refs {
			if keys[i], err = narinfoKey(ref); err != nil {
				release()
				return fmt.Errorf("write %s: %w", key, err)
			}
		}
		present, err := p.presence.CheckMany(ctx, keys, readyAt)
		if err == nil {
			for i, ok := range present {
				if !ok {
					err = fmt.Errorf("%s is not in the cache; push it first", refs[i])
					break
				}
			}
		}
		if err != nil {
			release()
			return fmt.Errorf("write %s: %w", key, err)
		}
		if p.Locker != nil && !p.lockValid() {
			release()
			continue
		}
		if b, ok := p.t.(cache.Barrierer); ok {
			err = b.Barrier(ctx)
		}
		if err == nil {
			err = p.t.Put(ctx, key, bytes.NewReader(body), int64(len(body)), contentType)
		}
		release()
		if err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
		return nil
	}
}

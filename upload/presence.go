package upload

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/sema"
	"golang.org/x/sync/errgroup"
)

// Presence answers "is this object in the cache?" with a freshness bound,
// because presence is a fact about now: an expiry rule, a hand `mc rm` or a
// gc on another machine may delete at any time.
//
// Every question says how old an answer it accepts (notBefore): the
// initial "what is missing?" pass accepts answers younger than the TTL,
// while the check before a narinfo is published accepts only an answer
// from a request sent after the narinfo became ready. Questions about one
// key share requests (single-flight): a request not yet sent, or one sent
// after the asker's bound, serves everybody waiting on it. Waiting for a
// network slot is what batches them: the longer the queue, the more
// askers share each request.
type Presence struct {
	target cache.Target
	ttl    time.Duration

	// Requests counts existence requests sent to the target.
	Requests atomic.Int64
	// Counters for Stats: questions asked, answered from memory, answered
	// by another asker's request, and listings sent.
	checks, hits, shared, listings atomic.Int64

	mu      sync.Mutex
	known   map[string]answer
	cur     map[string]*probe // sent, not answered
	next    map[string]*probe // not sent yet: anyone may join
	inserts int
	resetAt time.Time
	// prior is known as it was at the last Reset: no longer an answer,
	// but it tells a key the cache lost from one never uploaded. lost
	// holds the keys a fresh answer found missing after an earlier one
	// had found them (or Mark had written them), and when.
	prior map[string]answer
	lost  map[string]time.Time
	// busy counts the pushes going on; period counts the moments it fell
	// to 0, which end what Written vouches for.
	busy   int
	period uint64

	// Listings answer many keys with a request per thousand objects.
	rl        cache.RootLister
	rootCount int // objects at the top of the cache, as last listed (0: unknown)
	listCur   *listProbe
	listNext  *listProbe
	// snap is the last whole listing: a top-level key it lacks was
	// absent when it was sent, so it answers, present or absent, every
	// question whose bound it meets. heads counts the existence requests
	// for top-level keys sent since; once they cost what a listing does,
	// the next question lists instead (rent or buy), and the askers that
	// follow share that listing.
	snap  *listProbe
	heads int
	// rootAtLeast is a lower bound on the objects at the top of the
	// cache while rootCount is unknown: a listing that stopped at its
	// budget saw more than that.
	rootAtLeast int
}

type listProbe struct {
	done chan struct{}
	at   time.Time
	keys map[string]string // key → ETag
	err  error
}

type answer struct {
	at time.Time // when the request that gave it was sent
	ok bool
	// own is 1 + the busy period in which this process wrote the key
	// (MarkWritten), 0 if it did not.
	own uint64
}

type probe struct {
	done chan struct{}
	at   time.Time // set when sent
	ok   bool
	err  error
}

// NewPresence returns a Presence for t that remembers answers for ttl.
// t is the Pusher's target as wrapped (retried, and bounded by
// cache/sema, whose Trace tells a probe when it is sent).
func NewPresence(t cache.Target, ttl time.Duration) *Presence {
	p := &Presence{
		target: t, ttl: ttl,
		known: map[string]answer{}, cur: map[string]*probe{}, next: map[string]*probe{},
		lost: map[string]time.Time{},
	}
	p.rl, _ = t.(cache.RootLister)
	if l, ok := t.(cache.Local); ok && l.IsLocal() {
		// A stat is cheaper than reading a directory of every narinfo.
		p.rl = nil
	}
	return p
}

// CheckMany is Check for many top-level keys at once. When a listing of
// the cache costs far fewer requests than one check per key, one listing
// sent after notBefore answers them all, shared by every concurrent
// caller whose bound it meets.
func (p *Presence) CheckMany(ctx context.Context, keys []string, notBefore time.Time) ([]bool, error) {
	out := make([]bool, len(keys))
	p.mu.Lock()
	// A listing must save requests and CPU: decoding a listed object
	// costs about 1/listPerCheck of a check's request.
	useList := p.rl != nil && p.rootCount > 0 && len(keys) >= 16 && len(keys)*listPerCheck >= p.rootCount
	p.mu.Unlock()
	if useList {
		lp, err := p.listing(ctx, notBefore, 0)
		if err == nil {
			p.checks.Add(int64(len(keys)))
			p.mu.Lock()
			for i, k := range keys {
				_, out[i] = lp.keys[k]
				p.remember(k, answer{at: lp.at, ok: out[i]})
			}
			p.mu.Unlock()
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		// The listing failed: fall back to checking one by one.
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i, k := range keys {
		g.Go(func() error {
			ok, err := p.Check(gctx, k, notBefore)
			out[i] = ok
			return err
		})
	}
	return out, g.Wait()
}

// listing returns a listing of the top of the cache sent after notBefore,
// joining one in flight or queued when it can. A budget above 0 stops a
// listing of more objects than that with errEnough (the cache's size
// being unknown).
func (p *Presence) listing(ctx context.Context, notBefore time.Time, budget int) (*listProbe, error) {
	p.mu.Lock()
	if lp := p.listCur; lp != nil && lp.at.After(notBefore) {
		p.mu.Unlock()
		return lp.wait(ctx)
	}
	if lp := p.listNext; lp != nil {
		p.mu.Unlock()
		return lp.wait(ctx)
	}
	lp := &listProbe{done: make(chan struct{})}
	p.listNext = lp
	p.mu.Unlock()

	// Sent is when the listing got its network slot: until then it is
	// joinable by anyone (listNext), from then on by askers whose bound
	// it meets (listCur).
	sizeHint := 64
	sent := func() {
		p.mu.Lock()
		if p.listNext == lp {
			p.listNext = nil
		}
		lp.at = time.Now()
		p.listCur = lp
		sizeHint = p.rootCount + 64
		p.heads = 0
		p.mu.Unlock()
	}
	p.listings.Add(1)
	asked := time.Now()
	var keys map[string]string
	err := p.rl.ListRoot(sema.WithTrace(ctx, &sema.Trace{GotSlot: sent}), func(o cache.ObjectInfo) error {
		if keys == nil {
			keys = make(map[string]string, sizeHint)
		}
		if budget > 0 && len(keys) >= budget {
			return errEnough
		}
		keys[o.Key] = o.ETag
		return nil
	})
	if keys == nil {
		keys = map[string]string{}
	}
	p.Requests.Add(int64(len(keys)/1000 + 1))
	p.mu.Lock()
	if p.listNext == lp { // never sent
		p.listNext = nil
	}
	if lp.at.IsZero() {
		// A target without a slot layer (tests): sent when asked.
		lp.at = asked
	}
	if p.listCur == lp {
		p.listCur = nil
	}
	switch {
	case err == nil:
		p.rootCount = len(keys)
		lp.keys = keys
		p.keepSnap(lp)
	case errors.Is(err, errEnough):
		// Bigger than thought: try again once twice as many
		// requests were sent, so that the listings given up cost at
		// most what the requests they tried to replace did.
		p.rootAtLeast = max(p.rootAtLeast, 2*budget)
	}
	p.mu.Unlock()
	lp.err = err
	close(lp.done)
	return lp, err
}

// keepSnap makes lp the snapshot if it is newer and was sent after the
// last Reset. p.mu is held.
func (p *Presence) keepSnap(lp *listProbe) {
	if lp.at.Before(p.resetAt) || (p.snap != nil && p.snap.at.After(lp.at)) {
		return
	}
	p.snap = lp
}

// fromListings answers a question about a top-level key from the
// snapshot, or from a listing in flight or queued, when one meets the
// bound; or, when the existence requests sent since the last listing
// cost what a listing does, from a new one. It reports whether it
// answered. p.mu is held on entry and released when it answers.
func (p *Presence) fromListings(ctx context.Context, key string, notBefore time.Time) (bool, bool, error) {
	if p.rl == nil || strings.IndexByte(key, '/') >= 0 {
		return false, false, nil
	}
	if s := p.snap; s != nil {
		if s.at.After(notBefore) {
			_, ok := s.keys[key]
			p.mu.Unlock()
			p.hits.Add(1)
			return ok, true, nil
		}
		if time.Since(s.at) > p.ttl {
			p.snap = nil // it answers nothing any more: free it
		}
	}
	join := p.listNext
	if lp := p.listCur; lp != nil && lp.at.After(notBefore) {
		join = lp
	}
	// Of a cache whose size is unknown (a daemon's first small batches
	// never made Prime list), a listing costs at least a page, and one
	// that finds more objects than the requests it replaces is given up.
	size, budget := p.rootCount, 0
	if size == 0 {
		size = max(p.rootAtLeast, listPage)
		budget = (p.heads + 1) * listPerCheck
	}
	buy := join == nil && (p.heads+1)*listPerCheck >= size
	if join == nil && !buy {
		p.heads++
		return false, false, nil
	}
	p.mu.Unlock()
	var lp *listProbe
	var err error
	if join != nil {
		lp, err = join.wait(ctx)
		if err == nil {
			p.shared.Add(1)
		}
	} else {
		lp, err = p.listing(ctx, notBefore, budget)
	}
	p.mu.Lock()
	if err != nil {
		if ctx.Err() != nil {
			p.mu.Unlock()
			return false, true, ctx.Err()
		}
		p.heads++ // the listing failed: ask the key itself
		return false, false, nil
	}
	_, ok := lp.keys[key]
	p.remember(key, answer{at: lp.at, ok: ok})
	p.mu.Unlock()
	return ok, true, nil
}

func (lp *listProbe) wait(ctx context.Context) (*listProbe, error) {
	select {
	case <-lp.done:
		return lp, lp.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// remembered answers Check(key, notBefore) from memory (a remembered
// answer or the snapshot) when it can, without a request or a goroutine:
// a batch's closure is mostly paths answered already.
func (p *Presence) remembered(key string, notBefore time.Time) (ok, answered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, found := p.known[key]; found && a.at.After(notBefore) {
		ok, answered = a.ok, true
	} else if s := p.snap; s != nil && p.rl != nil && s.at.After(notBefore) && strings.IndexByte(key, '/') < 0 {
		_, ok = s.keys[key]
		answered = true
	}
	if answered {
		p.checks.Add(1)
		p.hits.Add(1)
	}
	return ok, answered
}

// Recent reports whether key exists, accepting an answer younger than the
// TTL.
func (p *Presence) Recent(ctx context.Context, key string) (bool, error) {
	return p.Check(ctx, key, time.Now().Add(-p.ttl))
}

// Check reports whether key exists, from a request sent after notBefore.
func (p *Presence) Check(ctx context.Context, key string, notBefore time.Time) (bool, error) {
	p.checks.Add(1)
	for {
		ok, err := p.check(ctx, key, notBefore)
		// Another asker's cancelled request is not our answer.
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		return ok, err
	}
}

func (p *Presence) check(ctx context.Context, key string, notBefore time.Time) (bool, error) {
	p.mu.Lock()
	if a, ok := p.known[key]; ok && a.at.After(notBefore) {
		p.mu.Unlock()
		p.hits.Add(1)
		return a.ok, nil
	}
	if pr := p.cur[key]; pr != nil && pr.at.After(notBefore) {
		p.mu.Unlock()
		return p.join(ctx, pr)
	}
	if pr := p.next[key]; pr != nil {
		p.mu.Unlock()
		return p.join(ctx, pr)
	}
	if ok, answered, err := p.fromListings(ctx, key, notBefore); answered {
		return ok, err
	}
	pr := &probe{done: make(chan struct{})}
	p.next[key] = pr
	p.mu.Unlock()

	// This caller sends the request for everybody who joins meanwhile:
	// until it has a network slot anyone may join, then only askers whose
	// bound its sending time meets. Each try is dated when it is sent.
	asked := time.Now()
	sent := func() {
		p.Requests.Add(1)
		p.mu.Lock()
		if p.next[key] == pr {
			delete(p.next, key)
		}
		pr.at = time.Now()
		p.cur[key] = pr
		p.mu.Unlock()
	}
	ok, err := p.target.Exists(sema.WithTrace(ctx, &sema.Trace{GotSlot: sent}), key)
	p.mu.Lock()
	if p.next[key] == pr { // never sent
		delete(p.next, key)
	}
	if pr.at.IsZero() {
		// A target without a slot layer (tests): sent when asked.
		p.Requests.Add(1)
		pr.at = asked
	}
	pr.ok = ok
	p.mu.Unlock()
	pr.err = err
	p.mu.Lock()
	if p.cur[key] == pr {
		delete(p.cur, key)
	}
	if err == nil {
		p.remember(key, answer{at: pr.at, ok: pr.ok})
	}
	p.mu.Unlock()
	close(pr.done)
	return pr.ok, err
}

// join waits for another asker's request, counting the answer it shares.
func (p *Presence) join(ctx context.Context, pr *probe) (bool, error) {
	ok, err := pr.wait(ctx)
	if err == nil {
		p.shared.Add(1)
	}
	return ok, err
}

func (pr *probe) wait(ctx context.Context) (bool, error) {
	select {
	case <-pr.done:
		return pr.ok, pr.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// listPerCheck is how many listed objects cost what one existence
// request does: a listing answers keys at most this many times more
// numerous than itself. Measured against MinIO, a listed object costs
// the client ~4 µs of CPU (listv2.go) against ~175 µs for a HEAD (1/40),
// but the server ~55 µs against ~500 µs (1/9). Many builders share one
// server, so the listing must pay on both sides.
const listPerCheck = 10

// listPage is how many objects one listing request returns at most
// (S3's default max-keys): what the server reads for a listing of a
// cache of unknown size, however early it is given up.
const listPage = 1000

// errEnough stops a listing that costs more than the checks it replaces.
var errEnough = errors.New("listing longer than the checks it would save")

// Prime answers, with one listing, which of keys (top-level objects such
// as narinfos) the cache has, as of the listing's start: one request per
// thousand objects instead of one per key. It gives up, having answered
// nothing, once the listing would cost more client CPU than the checks
// it saves (listPerCheck listed objects per key); it reports whether it
// answered.
func (p *Presence) Prime(ctx context.Context, l cache.RootLister, keys []string) (bool, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = false
	}
	budget := len(keys) * listPerCheck // objects listed, at 1,000 a request
	p.mu.Lock()
	known := p.rootCount
	p.mu.Unlock()
	if known > budget {
		return false, nil // the last listing says this one would not pay
	}
	start := time.Now()
	seen := 0
	all := make(map[string]string, min(known, budget)+64)
	err := l.ListRoot(ctx, func(o cache.ObjectInfo) error {
		if seen++; seen > budget {
			return errEnough
		}
		if _, ok := want[o.Key]; ok {
			want[o.Key] = true
		}
		all[o.Key] = o.ETag
		return nil
	})
	p.Requests.Add(int64(seen/1000 + 1))
	p.listings.Add(1)
	if errors.Is(err, errEnough) {
		p.mu.Lock()
		p.rootAtLeast = max(p.rootAtLeast, budget)
		p.mu.Unlock()
		return false, nil
	}
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	p.rootCount = max(seen, 1)
	p.heads = 0
	for k, ok := range want {
		p.remember(k, answer{at: start, ok: ok})
	}
	if l == p.rl {
		p.keepSnap(&listProbe{at: start, keys: all})
	}
	p.mu.Unlock()
	return true, nil
}

// ListedETag returns key's ETag in the last whole listing of the top of
// the cache, if that listing is younger than the TTL and has key.
func (p *Presence) ListedETag(key string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.snap
	if s == nil || time.Since(s.at) >= p.ttl {
		return "", false
	}
	tag, ok := s.keys[key]
	return tag, ok && tag != ""
}

// Known reports whether a remembered answer younger than the TTL says key
// is present, without asking the cache.
func (p *Presence) Known(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.known[key]
	return ok && a.ok && time.Since(a.at) < p.ttl
}

// Answered reports whether a remembered answer younger than the TTL
// exists for key, present or not; a listing younger than the TTL
// answers for every top-level key.
func (p *Presence) Answered(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.known[key]; ok && time.Since(a.at) < p.ttl {
		return true
	}
	return p.snap != nil && p.rl != nil && time.Since(p.snap.at) < p.ttl && strings.IndexByte(key, '/') < 0
}

// Mark records what this process just did: ok after writing key. It
// satisfies Recent, never a later Check's stricter bound.
func (p *Presence) Mark(key string, ok bool) {
	p.mu.Lock()
	p.remember(key, answer{at: time.Now(), ok: ok})
	p.mu.Unlock()
}

// remember keeps the newer answer; p.mu is held.
func (p *Presence) remember(key string, a answer) {
	old, ok := p.known[key]
	if (ok && old.at.After(a.at)) || a.at.Before(p.resetAt) {
		return
	}
	if !a.ok && ((ok && old.ok) || p.prior[key].ok) {
		p.lost[key] = a.at
	}
	if ok && a.ok && a.own == 0 {
		a.own = old.own // seen since it was written: still ours
	}
	p.known[key] = a
	// Drop expired answers now and then, so memory follows the TTL, not
	// the daemon's uptime.
	if p.inserts++; p.inserts >= 4096 && p.inserts >= len(p.known) {
		cutoff := time.Now().Add(-p.ttl)
		for k, v := range p.known {
			if !v.at.After(cutoff) {
				delete(p.known, k)
			}
		}
		for k, at := range p.lost {
			if !at.After(cutoff) {
				delete(p.lost, k)
			}
		}
		p.inserts = 0
	}
}

// MarkWritten records that this process just wrote key, in the lock
// session its caller holds (Reset, at a new session, forgets it).
func (p *Presence) MarkWritten(key string) {
	p.mu.Lock()
	p.remember(key, answer{at: time.Now(), ok: true, own: p.period + 1})
	p.mu.Unlock()
}

// Written reports whether this process wrote key in the current lock
// session, during the pushes going on now (Busy), less than the TTL ago.
// The check before a dependent's narinfo takes that as present: what can
// delete it since (an expiry rule, days later) would not, and a gc under
// the lock starts a new session. Once no push is going on, what was
// written counts for no more than what was seen: a burst's paths refer to
// each other without a request each, while a path expired behind an idle
// daemon's back is caught before a new dependent names it.
func (p *Presence) Written(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.known[key]
	return ok && a.ok && a.own == p.period+1 && time.Since(a.at) < p.ttl
}

// Busy and Done bracket a push (see Written).
func (p *Presence) Busy() {
	p.mu.Lock()
	p.busy++
	p.mu.Unlock()
}

// Done ends what Busy began.
func (p *Presence) Done() {
	p.mu.Lock()
	if p.busy--; p.busy == 0 {
		p.period++
	}
	p.mu.Unlock()
}

// Lost reports whether key was found missing after this process had
// seen it in the cache (or written it), and forgets that: a path uploaded
// now is uploaded again, and its log line says so.
func (p *Presence) Lost(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.lost[key]
	delete(p.lost, key)
	return ok
}

// Reset forgets every answer: after a gc may have run (a new lock
// session), nothing seen before counts.
func (p *Presence) Reset() {
	p.mu.Lock()
	p.prior, p.known = p.known, make(map[string]answer, len(p.known))
	p.snap = nil
	p.resetAt = time.Now()
	p.mu.Unlock()
}

// PresenceStats counts a Presence's work since it was made.
type PresenceStats struct {
	Checks   int64 // questions "is this key in the cache?"
	Hits     int64 // answered from a remembered answer, no request sent
	Shared   int64 // answered by joining another asker's request
	Requests int64 // existence requests and listing pages sent
	Listings int64 // listings of the cache's top level (Prime and CheckMany)
}

// Stats returns the counters; safe to call at any time, from any goroutine.
func (p *Presence) Stats() PresenceStats {
	return PresenceStats{
		Checks: p.checks.Load(), Hits: p.hits.Load(), Shared: p.shared.Load(),
		Requests: p.Requests.Load(), Listings: p.listings.Load(),
	}
}

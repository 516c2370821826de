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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
)

// Pusher uploads store paths to a Target so that the cache is valid at every
// instant: a path's NAR goes up before its narinfo, and its narinfo only
// after the narinfos of all its references.
type Pusher struct {
	Target     Target
	Compressor *Compressor
	Key        *nar.SecretKey // nil: unsigned
	Jobs       int            // paths serialised/compressed/uploaded at once; 0 = GOMAXPROCS
	TempDir    string         // where compressed NARs wait for upload; "" = os.TempDir()
	Retry      RetryPolicy    // for each object PUT and existence check
	Log        *slog.Logger
	// OnEvent, if set, is called (from many goroutines) as paths progress.
	OnEvent func(Event)

	// NarBytes counts NAR bytes serialised so far, for progress displays.
	NarBytes atomic.Int64

	// dump serialises a path; nar.DumpPath unless a test replaces it.
	dump func(w io.Writer, path string) error

	mu       sync.Mutex
	inflight map[string]*pathState // paths being uploaded by any Push call
	sem      *semaphore.Weighted   // Jobs slots shared by all Push calls

	cacheInfoOnce sync.Mutex
	cacheInfoOK   bool
	known         sync.Map // hash part → struct{}: narinfos known present
}

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
	Total    int // paths in the closure
	Present  int // already cached
	Uploaded int
	NarBytes int64 // of uploaded paths
	// FileBytes is what was stored (compressed), not counting NAR files
	// that were already present.
	FileBytes int64
	Failed    map[string]error
}

// Err summarises the failures, or nil.
func (r *Result) Err() error {
	if len(r.Failed) == 0 {
		return nil
	}
	var errs []error
	for _, err := range r.Failed {
		errs = append(errs, err)
	}
	return fmt.Errorf("%d of %d paths failed: %w", len(r.Failed), r.Total, errors.Join(errs...))
}

func (p *Pusher) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

func (p *Pusher) jobs() int {
	if p.Jobs > 0 {
		return p.Jobs
	}
	return runtime.GOMAXPROCS(0)
}

func (p *Pusher) emit(e Event) {
	if p.OnEvent != nil {
		p.OnEvent(e)
	}
}

func narinfoKey(storePath string) (string, error) {
	sp, err := nar.ParseStorePath(storePath)
	if err != nil {
		return "", err
	}
	return sp.Hash + ".narinfo", nil
}

// EnsureCacheInfo writes nix-cache-info if the cache has none.
func (p *Pusher) EnsureCacheInfo(ctx context.Context) error {
	p.cacheInfoOnce.Lock()
	defer p.cacheInfoOnce.Unlock()
	if p.cacheInfoOK {
		return nil
	}
	var ok bool
	err := p.Retry.Do(ctx, func() (err error) {
		ok, err = p.Target.Exists(ctx, "nix-cache-info")
		return err
	})
	if err != nil {
		return err
	}
	if !ok {
		err = p.Retry.Do(ctx, func() error {
			return p.Target.Put(ctx, "nix-cache-info", bytes.NewReader([]byte(CacheInfo)), int64(len(CacheInfo)), TypeCacheInfo)
		})
		if err != nil {
			return err
		}
		p.log().Info("wrote nix-cache-info", "target", p.Target.String())
	}
	p.cacheInfoOK = true
	return nil
}

// Missing returns the paths among infos whose narinfo is not in the cache,
// checking each path at most once, concurrently.
func (p *Pusher) Missing(ctx context.Context, infos []*store.PathInfo) ([]*store.PathInfo, error) {
	present := make([]bool, len(infos))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32) // existence checks are tiny; latency, not bandwidth, bounds them
	for i, pi := range infos {
		key, err := narinfoKey(pi.Path)
		if err != nil {
			return nil, err
		}
		if _, ok := p.known.Load(key); ok {
			present[i] = true
			continue
		}
		g.Go(func() error {
			var ok bool
			err := p.Retry.Do(gctx, func() (err error) {
				ok, err = p.Target.Exists(gctx, key)
				return err
			})
			if err != nil {
				return fmt.Errorf("check %s: %w", pi.Path, err)
			}
			if ok {
				p.known.Store(key, struct{}{})
				present[i] = true
			}
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
	res := &Result{Total: len(closure), Failed: map[string]error{}}
	if err := p.EnsureCacheInfo(ctx); err != nil {
		return res, err
	}
	missing, err := p.Missing(ctx, closure)
	if err != nil {
		return res, err
	}
	res.Present = len(closure) - len(missing)
	if len(missing) == 0 {
		return res, nil
	}
	missing = store.SortTopo(missing)

	// Start the paths no other Push is already uploading; share the rest.
	mine := make(map[string]bool, len(missing))
	states := make([]*pathState, len(missing))
	p.mu.Lock()
	if p.inflight == nil {
		p.inflight = map[string]*pathState{}
		p.sem = semaphore.NewWeighted(int64(p.jobs()))
	}
	for i, pi := range missing {
		st, ok := p.inflight[pi.Path]
		if key, _ := narinfoKey(pi.Path); !ok && p.isKnown(key) {
			// Finished by another Push since Missing checked: known is
			// set before a path leaves inflight, so this cannot miss.
			st = donePresent
		} else if !ok {
			st = &pathState{done: make(chan struct{})}
			p.inflight[pi.Path] = st
			mine[pi.Path] = true
		}
		states[i] = st
	}
	p.mu.Unlock()

	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, pi := range missing {
		st := states[i]
		if !mine[pi.Path] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			fileSize, err := p.pushOne(ctx, pi, p.waitRef)
			st.err = err
			p.mu.Lock()
			delete(p.inflight, pi.Path)
			p.mu.Unlock()
			close(st.done)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed[pi.Path] = err
				p.emit(Event{Kind: EventFailed, Path: pi.Path, Err: err, Duration: time.Since(start)})
				return
			}
			res.Uploaded++
			res.NarBytes += pi.NarSize
			res.FileBytes += fileSize
			p.emit(Event{Kind: EventUploaded, Path: pi.Path, NarSize: pi.NarSize, FileSize: fileSize, Duration: time.Since(start)})
		}()
	}
	wg.Wait()
	// Paths another Push was uploading: wait for its outcome.
	for i, pi := range missing {
		if mine[pi.Path] {
			continue
		}
		select {
		case <-states[i].done:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		if err := states[i].err; err != nil {
			res.Failed[pi.Path] = err
		} else {
			res.Present++
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// donePresent stands for a path another Push has just uploaded.
var donePresent = func() *pathState {
	st := &pathState{done: make(chan struct{})}
	close(st.done)
	return st
}()

func (p *Pusher) isKnown(key string) bool {
	_, ok := p.known.Load(key)
	return ok
}

// pathState is one path being uploaded; done closes when its narinfo is
// written or it has failed (err set before the close).
type pathState struct {
	done chan struct{}
	err  error
}

// waitRef blocks until ref's narinfo is in the cache, or says why it won't be.
func (p *Pusher) waitRef(ctx context.Context, ref string) error {
	key, err := narinfoKey(ref)
	if err != nil {
		return err
	}
	if _, ok := p.known.Load(key); ok {
		return nil
	}
	p.mu.Lock()
	st, ok := p.inflight[ref]
	p.mu.Unlock()
	if !ok {
		// Neither uploading nor known: it was present when this Push
		// checked (Missing marks those known), or it just finished.
		if _, ok := p.known.Load(key); ok {
			return nil
		}
		return fmt.Errorf("reference %s was not uploaded", ref)
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if st.err != nil {
		return fmt.Errorf("reference %s was not uploaded", ref)
	}
	return nil
}

// pushOne uploads pi's NAR (holding a worker slot), then waits for its
// references and writes its narinfo.
func (p *Pusher) pushOne(ctx context.Context, pi *store.PathInfo, waitRef func(context.Context, string) error) (int64, error) {
	start := time.Now()
	if err := p.sem.Acquire(ctx, 1); err != nil {
		return 0, err
	}
	info, fileSize, err := p.uploadNAR(ctx, pi)
	p.sem.Release(1)
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", pi.Path, err)
	}
	for _, ref := range pi.References {
		if ref == pi.Path {
			continue
		}
		if err := waitRef(ctx, ref); err != nil {
			return 0, fmt.Errorf("upload %s: %w", pi.Path, err)
		}
	}
	if p.Key != nil {
		info.Sign(p.Key)
	}
	text, err := info.MarshalText()
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", pi.Path, err)
	}
	key, _ := narinfoKey(pi.Path)
	err = p.Retry.Do(ctx, func() error {
		return p.Target.Put(ctx, key, bytes.NewReader(text), int64(len(text)), TypeNarInfo)
	})
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", pi.Path, err)
	}
	p.known.Store(key, struct{}{})
	p.log().Info("uploaded", "STORE_PATH", pi.Path, "nar_size", pi.NarSize, "file_size", fileSize,
		"duration", time.Since(start).Round(time.Millisecond), "url", info.URL)
	return fileSize, nil
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
// returns the (unsigned) narinfo describing it. The compressed file is
// spooled to disk so that memory stays flat in NAR size and a retried PUT
// does not compress again.
func (p *Pusher) uploadNAR(ctx context.Context, pi *store.PathInfo) (*nar.NarInfo, int64, error) {
	tmp, err := os.CreateTemp(p.TempDir, "nixpushd-*"+p.Compressor.Ext())
	if err != nil {
		return nil, 0, fmt.Errorf("temporary file: %w (set --temp-dir to a writable directory)", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	fileHash := &countingHash{Hash: sha256.New()}
	narHash := &countingHash{Hash: sha256.New()}
	zw, err := p.Compressor.NewWriter(io.MultiWriter(tmp, fileHash))
	if err != nil {
		return nil, 0, err
	}
	dump := p.dump
	if dump == nil {
		dump = nar.DumpPath
	}
	dumpErr := dump(&ctxWriter{ctx: ctx, w: io.MultiWriter(narHash, zw, counter{&p.NarBytes})}, pi.Path)
	closeErr := zw.Close()
	switch {
	case dumpErr != nil && ctx.Err() != nil:
		return nil, 0, ctx.Err()
	case dumpErr != nil && errors.Is(dumpErr, fs.ErrNotExist):
		return nil, 0, fmt.Errorf("%w (garbage-collected before upload?): %v", ErrGone, dumpErr)
	case dumpErr != nil:
		return nil, 0, dumpErr
	case closeErr != nil:
		return nil, 0, fmt.Errorf("compress: %w", closeErr)
	}
	got := nar.NewSHA256(narHash.Sum(nil))
	if !got.Equal(pi.NarHash) || (pi.NarSize != 0 && narHash.n != pi.NarSize) {
		return nil, 0, fmt.Errorf("%w: the store registered %s (%d bytes) but the contents hash to %s (%d bytes); the path was modified after it was built, repair it with `nix-store --repair-path %s`",
			ErrCorrupt, pi.NarHash, pi.NarSize, got, narHash.n, pi.Path)
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
			return nil, 0, fmt.Errorf("reference %s: %w", r, err)
		}
		info.References = append(info.References, sp.Base())
	}
	if pi.Deriver != "" {
		if sp, err := nar.ParseStorePath(pi.Deriver); err == nil {
			info.Deriver = sp.Base()
		}
	}

	// The NAR file is content-addressed: if it is there, it is this file.
	var exists bool
	if err := p.Retry.Do(ctx, func() (err error) {
		exists, err = p.Target.Exists(ctx, info.URL)
		return err
	}); err != nil {
		return nil, 0, err
	}
	if exists {
		return info, 0, nil
	}
	err = p.Retry.Do(ctx, func() error {
		return p.Target.Put(ctx, info.URL, io.NewSectionReader(tmp, 0, fileHash.n), fileHash.n, TypeNAR)
	})
	if err != nil {
		return nil, 0, err
	}
	return info, fileHash.n, nil
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

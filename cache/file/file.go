package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// Dir is a binary cache in a local directory, as `nix copy --to file://DIR`
// makes and reads.
type Dir struct {
	Root string

	bmu         sync.Mutex
	bcur, bnext *syncRound
	dirs        sync.Map // directories known to exist
	lastSync    time.Time

	tmpOnce sync.Once
	tmpRand string        // random part of temporary names
	tmpSeq  atomic.Uint64 // counter part
}

// syncEvery spaces filesystem syncs out.
const syncEvery = 25 * time.Millisecond

// New returns a file:// target rooted at dir (created if missing).
func New(dir string) (*Dir, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("file:// cache needs an absolute directory, got %q (write file:///abs/path)", dir)
	}
	if i := strings.IndexByte(dir, '?'); i >= 0 {
		return nil, fmt.Errorf("file://%s: query parameters are not supported; use --compression and --secret-key-file", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		return nil, fmt.Errorf("create cache directory: %w", err)
	}
	return &Dir{Root: dir}, nil
}

func (f *Dir) String() string { return "file://" + f.Root }

// IsLocal is true: a stat answers an existence check.
func (f *Dir) IsLocal() bool { return true }

func (f *Dir) path(key string) (string, error) {
	clean := filepath.Clean(key)
	if key == "" || clean != key || filepath.IsAbs(key) || strings.HasPrefix(clean, "..") {
		return "", fmt.Errorf("invalid object key %q", key)
	}
	return filepath.Join(f.Root, key), nil
}

func (f *Dir) Exists(ctx context.Context, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p, err := f.path(key)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (f *Dir) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", p, cache.ErrNotFound)
	}
	return b, err
}

// Put writes to a temporary file and renames it into place, so a crash
// never leaves a truncated object under its final name. It does not wait
// for the disk: Barrier does, once for many objects, before the Pusher
// publishes a narinfo that points at them.
func (f *Dir) Put(ctx context.Context, key string, body io.Reader, size int64, _ string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := f.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if _, ok := f.dirs.Load(dir); !ok {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f.dirs.Store(dir, true)
	}
	// Our own unique name rather than CreateTemp: the file is born 0644
	// (readable by Nix clients of other users), with no chmod, and the
	// name costs no random read per object.
	tmpName := filepath.Join(dir, ".tmp-"+filepath.Base(p)+"-"+f.tmpPrefix()+strconv.FormatUint(f.tmpSeq.Add(1), 36))
	tmp, err := createExcl(tmpName)
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmpName)
		}
	}()
	buf := copyBufs.Get().(*[]byte)
	// Hide ReadFrom: os.File's would allocate its own buffer per object.
	n, err := io.CopyBuffer(struct{ io.Writer }{tmp}, body, *buf)
	copyBufs.Put(buf)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("wrote %d bytes, expected %d", n, size)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err() // cancelled while copying: publish nothing
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := renameFile(tmpName, p); err != nil {
		return err
	}
	renamed = true
	return nil
}

// tmpPrefix is random per Dir, so that two processes writing one cache
// never pick the same temporary name; a counter tells this Dir's apart.
func (f *Dir) tmpPrefix() string {
	f.tmpOnce.Do(func() {
		var rnd [6]byte
		rand.Read(rnd[:])
		f.tmpRand = hex.EncodeToString(rnd[:]) + "-"
	})
	return f.tmpRand
}

// Barrier returns once everything written before the call is on disk. One
// filesystem sync serves every caller waiting for it (group commit), so a
// closure of 100,000 small paths costs a few hundred syncs, not 400,000.
func (f *Dir) Barrier(ctx context.Context) error {
	f.bmu.Lock()
	if b := f.bnext; b != nil {
		f.bmu.Unlock()
		return b.wait(ctx)
	}
	b := &syncRound{done: make(chan struct{})}
	f.bnext = b
	prev := f.bcur
	f.bmu.Unlock()
	if prev != nil {
		<-prev.done // one sync at a time; ours starts after it
	}
	// At most one sync per syncEvery: the callers arriving meanwhile
	// share ours, and the disk does fewer, larger flushes.
	f.bmu.Lock()
	wait := syncEvery - time.Since(f.lastSync)
	f.bmu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	f.bmu.Lock()
	f.bnext, f.bcur = nil, b
	f.lastSync = time.Now()
	f.bmu.Unlock()
	b.err = syncFS(f.Root)
	f.bmu.Lock()
	if f.bcur == b {
		f.bcur = nil
	}
	f.bmu.Unlock()
	close(b.done)
	return b.err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type syncRound struct {
	done chan struct{}
	err  error
}

func (b *syncRound) wait(ctx context.Context) error {
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Dir) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	// Walk only the directory the prefix names; keys use '/'.
	dir := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
	}
	var fnErr error
	err := f.walk(ctx, dir, prefix, func(o cache.ObjectInfo) error {
		fnErr = fn(o)
		return fnErr
	})
	if fnErr != nil {
		return fnErr // as it is, as the contract says
	}
	if err != nil {
		return fmt.Errorf("list %s/%s*: %w", f.Root, prefix, err)
	}
	return nil
}

// walk calls fn for the objects under the directory rel (a key prefix
// without its trailing '/', "" for the root) whose keys start with prefix,
// in key order: a directory sorts among its siblings as its name and a '/',
// as the keys inside it do ("nar-x" and "nar.y" before "nar/1").
func (f *Dir) walk(ctx context.Context, rel, prefix string, fn func(cache.ObjectInfo) error) error {
	entries, err := os.ReadDir(filepath.Join(f.Root, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no such directory, or deleted while we walked
	}
	if err != nil {
		return err
	}
	sortName := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(sortName(a), sortName(b)) })
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		key := sortName(e)
		if rel != "" {
			key = rel + "/" + key
		}
		if e.IsDir() {
			if strings.HasPrefix(key, prefix) || strings.HasPrefix(prefix, key) {
				if err := f.walk(ctx, strings.TrimSuffix(key, "/"), prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we walked
		}
		if err != nil {
			return err
		}
		if err := fn(cache.ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

func (f *Dir) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	entries, err := os.ReadDir(f.Root)
	if err != nil {
		return fmt.Errorf("list %s: %w", f.Root, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if err := fn(cache.ObjectInfo{Key: e.Name()}); err != nil {
			return err
		}
	}
	return nil
}

func (f *Dir) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	r, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", p, cache.ErrNotFound)
	}
	return r, err
}

func (f *Dir) Delete(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := f.path(k)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
	return nil
}

// What a Dir can do beyond Target.
var (
	_ cache.Target     = (*Dir)(nil)
	_ cache.Lister     = (*Dir)(nil)
	_ cache.RootLister = (*Dir)(nil)
	_ cache.Opener     = (*Dir)(nil)
	_ cache.Deleter    = (*Dir)(nil)
	_ cache.Barrierer  = (*Dir)(nil)
	_ cache.Local      = (*Dir)(nil)
)

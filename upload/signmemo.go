package upload

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/nixpushd/nixpushd/internal/fsutil"
)

// signMemo is what a push knows, from earlier runs, about which cached
// narinfos carry its key's valid signature: the MD5 of each narinfo text
// it read or wrote signed, by narinfo key. A listing gives each object's
// ETag, the MD5 of its content, so a narinfo whose ETag is the one
// remembered is the very text seen signed, and need not be read again.
// Without it every push reads every cached narinfo of its closure once
// (a listing carries no signatures).
//
// It is only ever a shortcut: a narinfo rewritten since (another ETag),
// a server whose ETags are not MD5s (encryption, multipart), or a lost
// or garbled file mean a read, as without it. So the file is appended to
// without fsync or locking; concurrent pushers' lines may interleave, and
// a line that does not parse is skipped.
type signMemo struct {
	file   string // "" : remembers for this process only
	header string

	mu      sync.Mutex
	loaded  bool
	sums    map[string]string // narinfo key → hex MD5 of the signed text
	lines   int               // lines in the file, for compaction
	pending []string          // lines to append
}

const memoMagic = "nixpushd signed narinfos v1"

// newSignMemo returns the memo of the narinfos of target signed by the
// key with public half pub, kept in a file under dir ("" : in memory).
func newSignMemo(dir, target, pub string) *signMemo {
	m := &signMemo{header: memoMagic + " " + pub}
	if dir != "" {
		// One file per cache and key; named by a hash, as a cache's
		// URL is not a file name.
		h := sha256.Sum256([]byte(target + "\n" + pub))
		m.file = filepath.Join(dir, hex.EncodeToString(h[:12]))
	}
	return m
}

func sumOf(text []byte) string {
	h := md5.Sum(text)
	return hex.EncodeToString(h[:])
}

// load reads the file once; a missing or foreign one is an empty memo.
func (m *signMemo) load() {
	if m.loaded {
		return
	}
	m.loaded = true
	m.sums = map[string]string{}
	if m.file == "" {
		return
	}
	b, err := os.ReadFile(m.file)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	if !sc.Scan() || sc.Text() != m.header {
		return
	}
	for sc.Scan() {
		m.lines++
		key, sum, ok := strings.Cut(sc.Text(), " ")
		if ok && strings.HasSuffix(key, ".narinfo") && len(sum) == 2*md5.Size {
			m.sums[key] = sum
		}
	}
}

// signed reports whether the narinfo at key, whose ETag a listing says is
// etag, is a text remembered as signed.
func (m *signMemo) signed(key, etag string) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.load()
	return etag != "" && m.sums[key] == etag
}

// add remembers that text, the narinfo at key, carries the key's valid
// signature.
func (m *signMemo) add(key string, text []byte) {
	if m == nil {
		return
	}
	sum := sumOf(text)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.load()
	if m.sums[key] == sum {
		return
	}
	m.sums[key] = sum
	m.pending = append(m.pending, key+" "+sum+"\n")
}

// flush appends what was added since the last flush to the file, or
// rewrites it when most of its lines are stale. An error only means
// that the next run reads more narinfos.
func (m *signMemo) flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.file == "" || len(m.pending) == 0 {
		return nil
	}
	pending := m.pending
	m.pending = nil
	if err := os.MkdirAll(filepath.Dir(m.file), 0o700); err != nil {
		return fmt.Errorf("remembering signed narinfos: %w", err)
	}
	m.lines += len(pending)
	if m.lines > 2*len(m.sums)+1000 {
		var b strings.Builder
		b.WriteString(m.header + "\n")
		for k, s := range m.sums {
			b.WriteString(k + " " + s + "\n")
		}
		m.lines = len(m.sums)
		if err := fsutil.WriteFileAtomic(m.file, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("remembering signed narinfos: %w", err)
		}
		return nil
	}
	f, err := os.OpenFile(m.file, os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err = fsutil.WriteFileNew(m.file, []byte(m.header+"\n"), 0o600); err == nil || errors.Is(err, fs.ErrExist) {
			f, err = os.OpenFile(m.file, os.O_WRONLY|os.O_APPEND, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("remembering signed narinfos: %w", err)
	}
	_, werr := f.WriteString(strings.Join(pending, ""))
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("remembering signed narinfos in %s: %w", m.file, werr)
	}
	return nil
}

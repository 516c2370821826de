package cachetest

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// Suite checks the contract of cache.Target and its optional capabilities
// (cache/cache.go) on a backend. Every subtest runs on a fresh, empty
// target from open; a capability's subtests are skipped when the target
// lacks it.
func Suite(t *testing.T, open func(t *testing.T) cache.Target) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, cache.Target)
	}{
		{"String", testString},
		{"PutGet", testPutGet},
		{"Missing", testMissing},
		{"Replace", testReplace},
		{"PutBodyFails", testPutBodyFails},
		{"PutShortBody", testPutShortBody},
		{"Keys", testKeys},
		{"List", testList},
		{"ListRoot", testListRoot},
		{"ListStops", testListStops},
		{"DirectoryMarkers", testDirectoryMarkers},
		{"Delete", testDelete},
		{"DeleteMany", testDeleteMany},
		{"Open", testOpen},
		{"ConcurrentPuts", testConcurrentPuts},
		{"Cancelled", testCancelled},
		{"Barrier", testBarrier},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// Sizes around the 1 MiB where cache/s3 switches from its own request
// to minio-go's streaming one, and one above 6 MiB: a multipart upload
// where the backend's smallest part is 5 MiB (S3's least).
var suiteSizes = []int{0, 1, 1000, 1 << 20, 1<<20 + 1, 3 << 20, 6<<20 + 1}

// data returns n reproducible, non-repeating bytes for seed.
func data(seed string, n int) []byte {
	var s [32]byte
	copy(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func put(t *testing.T, tg cache.Target, key string, b []byte) {
	t.Helper()
	if err := tg.Put(t.Context(), key, bytes.NewReader(b), int64(len(b)), cache.TypeNAR); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(b), err)
	}
}

// putMany puts every key (content: the key) from a few goroutines.
func putMany(t *testing.T, tg cache.Target, keys []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	work := make(chan string)
	for range 32 {
		wg.Go(func() {
			for k := range work {
				if err := tg.Put(t.Context(), k, strings.NewReader(k), int64(len(k)), cache.TypeNarInfo); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", k, err)
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func exists(t *testing.T, tg cache.Target, key string) bool {
	t.Helper()
	ok, err := tg.Exists(t.Context(), key)
	if err != nil {
		t.Fatalf("Exists(%q): %v", key, err)
	}
	return ok
}

func checkGet(t *testing.T, tg cache.Target, key string, want []byte) {
	t.Helper()
	got, err := tg.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes (%.20q…), want %d bytes (%.20q…)", key, len(got), got, len(want), want)
	}
}

// checkAbsent checks that nothing is visible under key: not to Exists,
// Get, Open, nor in a listing.
func checkAbsent(t *testing.T, tg cache.Target, key string) {
	t.Helper()
	if exists(t, tg, key) {
		t.Errorf("Exists(%q) = true, want false", key)
	}
	if b, err := tg.Get(t.Context(), key); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Get(%q) = %d bytes, %v; want an error wrapping cache.ErrNotFound", key, len(b), err)
	}
	if o, ok := tg.(cache.Opener); ok {
		r, err := o.Open(t.Context(), key)
		if err == nil {
			r.Close()
		}
		if !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Open(%q) = %v; want an error wrapping cache.ErrNotFound", key, err)
		}
	}
	if l, ok := tg.(cache.Lister); ok {
		for _, o := range list(t, l, "") {
			if o.Key == key {
				t.Errorf("List shows %q (%d bytes)", key, o.Size)
			}
		}
	}
}

func needLister(t *testing.T, tg cache.Target) cache.Lister {
	t.Helper()
	l, ok := tg.(cache.Lister)
	if !ok {
		t.Skipf("%s is not a cache.Lister", tg)
	}
	return l
}

func needRootLister(t *testing.T, tg cache.Target) cache.RootLister {
	t.Helper()
	l, ok := tg.(cache.RootLister)
	if !ok {
		t.Skipf("%s is not a cache.RootLister", tg)
	}
	return l
}

func needDeleter(t *testing.T, tg cache.Target) cache.Deleter {
	t.Helper()
	d, ok := tg.(cache.Deleter)
	if !ok {
		t.Skipf("%s is not a cache.Deleter", tg)
	}
	return d
}

func needOpener(t *testing.T, tg cache.Target) cache.Opener {
	t.Helper()
	o, ok := tg.(cache.Opener)
	if !ok {
		t.Skipf("%s is not a cache.Opener", tg)
	}
	return o
}

func list(t *testing.T, l cache.Lister, prefix string) []cache.ObjectInfo {
	t.Helper()
	var out []cache.ObjectInfo
	if err := l.List(t.Context(), prefix, func(o cache.ObjectInfo) error { out = append(out, o); return nil }); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func listRoot(t *testing.T, l cache.RootLister) []cache.ObjectInfo {
	t.Helper()
	var out []cache.ObjectInfo
	if err := l.ListRoot(t.Context(), func(o cache.ObjectInfo) error { out = append(out, o); return nil }); err != nil {
		t.Fatalf("ListRoot: %v", err)
	}
	return out
}

func keysOf(objs []cache.ObjectInfo) []string {
	keys := make([]string, len(objs))
	for i, o := range objs {
		keys[i] = o.Key
	}
	return keys
}

func testString(t *testing.T, tg cache.Target) {
	if tg.String() == "" {
		t.Error("String() is empty")
	}
}

func testPutGet(t *testing.T, tg cache.Target) {
	for _, n := range suiteSizes {
		key := fmt.Sprintf("nar/size-%d.nar", n)
		if exists(t, tg, key) {
			t.Fatalf("Exists(%q) = true before Put", key)
		}
		b := data(key, n)
		put(t, tg, key, b)
		if !exists(t, tg, key) {
			t.Fatalf("Exists(%q) = false after Put", key)
		}
		checkGet(t, tg, key, b)
		if l, ok := tg.(cache.Lister); ok {
			objs := list(t, l, key)
			if len(objs) != 1 || objs[0].Key != key || objs[0].Size != int64(n) {
				t.Errorf("List(%q) = %+v, want the one object of %d bytes", key, objs, n)
			} else {
				checkETag(t, objs[0], b)
			}
		}
	}
}

func testMissing(t *testing.T, tg cache.Target) {
	put(t, tg, "present", []byte("x"))
	for _, key := range []string{"missing.narinfo", "nar/missing.nar.xz", "presen", "present2"} {
		checkAbsent(t, tg, key)
	}
}

func testReplace(t *testing.T, tg cache.Target) {
	for _, sizes := range [][2]int{{5, 3}, {3, 5}, {100, 2<<20 + 7}, {2<<20 + 7, 100}} {
		key := fmt.Sprintf("replace-%d-%d", sizes[0], sizes[1])
		put(t, tg, key, data("first", sizes[0]))
		second := data("second", sizes[1])
		put(t, tg, key, second)
		checkGet(t, tg, key, second)
		if l, ok := tg.(cache.Lister); ok {
			objs := list(t, l, key)
			if len(objs) != 1 || objs[0].Size != int64(sizes[1]) {
				t.Errorf("List(%q) after replacing = %+v, want one object of %d bytes", key, objs, sizes[1])
			} else {
				checkETag(t, objs[0], second)
			}
		}
	}
}

// checkETag: a listed ETag is empty (the backend has none), a multipart
// one ("…-N"), or the MD5 of the content, which push relies on to tell
// an unchanged narinfo from a listing.
func checkETag(t *testing.T, o cache.ObjectInfo, content []byte) {
	t.Helper()
	if o.ETag == "" || strings.Contains(o.ETag, "-") {
		return
	}
	if sum := fmt.Sprintf("%x", md5.Sum(content)); o.ETag != sum {
		t.Errorf("List: %s has ETag %q, want the MD5 of its content %s", o.Key, o.ETag, sum)
	}
}

var errBody = errors.New("cachetest: the body fails")

// failingReader gives n bytes of b, then errBody.
type failingReader struct {
	r *bytes.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBody
	}
	return n, err
}

func testPutBodyFails(t *testing.T, tg cache.Target) {
	for _, c := range []struct{ size, fail int }{
		{10, 0}, {1000, 500}, {1 << 20, 1<<20 - 1}, {3 << 20, 2 << 20}, {3 << 20, 3<<20 - 1},
		{6<<20 + 1, 5<<20 + 100}, {6<<20 + 1, 6 << 20},
	} {
		key := fmt.Sprintf("nar/fails-%d-after-%d.nar", c.size, c.fail)
		b := data(key, c.size)
		err := tg.Put(t.Context(), key, &failingReader{bytes.NewReader(b[:c.fail])}, int64(c.size), cache.TypeNAR)
		if err == nil {
			t.Errorf("Put(%q) with a body failing after %d of %d bytes succeeded", key, c.fail, c.size)
		}
		checkAbsent(t, tg, key)
	}
	checkEmpty(t, tg)
	// A failed replacement leaves the old object or none, never part of the new.
	key := "nar/replaced-by-a-failure.nar"
	old := data("old", 100)
	put(t, tg, key, old)
	b := data(key, 2<<20)
	if err := tg.Put(t.Context(), key, &failingReader{bytes.NewReader(b[:1<<20])}, int64(len(b)), cache.TypeNAR); err == nil {
		t.Errorf("Put(%q) with a failing body succeeded", key)
	}
	got, err := tg.Get(t.Context(), key)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if err == nil && !bytes.Equal(got, old) {
		t.Errorf("after a failed replacement Get(%q) = %d bytes, want the old %d bytes or nothing", key, len(got), len(old))
	}
}

func testPutShortBody(t *testing.T, tg cache.Target) {
	for _, c := range []struct{ size, have int }{
		{1, 0}, {100, 50}, {1 << 20, 1<<20 - 1}, {1<<20 + 1, 1 << 20}, {3 << 20, 2 << 20},
		// Multipart; one case only: cache/s3 retries a failed part
		// with backoff, some 2 s.
		{6<<20 + 1, 6 << 20},
	} {
		key := fmt.Sprintf("nar/short-%d-of-%d.nar", c.have, c.size)
		err := tg.Put(t.Context(), key, bytes.NewReader(data(key, c.have)), int64(c.size), cache.TypeNAR)
		if err == nil {
			t.Errorf("Put(%q) of %d bytes with a body of %d succeeded", key, c.size, c.have)
		}
		checkAbsent(t, tg, key)
	}
	checkEmpty(t, tg)
}

// checkEmpty checks that the listings show nothing, no partial object
// under another name either.
func checkEmpty(t *testing.T, tg cache.Target) {
	t.Helper()
	if l, ok := tg.(cache.Lister); ok {
		if got := list(t, l, ""); len(got) != 0 {
			t.Errorf("List = %+v, want nothing", got)
		}
	}
	if l, ok := tg.(cache.RootLister); ok {
		if got := listRoot(t, l); len(got) != 0 {
			t.Errorf("ListRoot = %+v, want nothing", got)
		}
	}
}

// escapeKeys need escaping in a URL, a query or a signature.
var escapeKeys = []string{
	"with space.narinfo",
	"plus+sign",
	"percent%41",
	"percent%",
	"ünïcödé-ключ-鍵",
	"question?mark",
	"hash#tag",
	"bang!",
	"amp&lt;x>'\"",
	"tilde~star*paren()",
	"equals=semi;comma,at@dollar$",
	"nar/deep dir/x y+z%20#?.nar.xz",
	"realisations/sha256:abc!out.doi",
	"log/x.drv",
}

func testKeys(t *testing.T, tg cache.Target) {
	for _, key := range escapeKeys {
		if exists(t, tg, key) {
			t.Errorf("Exists(%q) = true before Put", key)
		}
		put(t, tg, key, []byte(key))
		if !exists(t, tg, key) {
			t.Errorf("Exists(%q) = false after Put", key)
		}
		checkGet(t, tg, key, []byte(key))
	}
	if l, ok := tg.(cache.Lister); ok {
		want := slices.Sorted(slices.Values(escapeKeys))
		if got := keysOf(list(t, l, "")); !slices.Equal(got, want) {
			t.Errorf("List = %q\nwant %q", got, want)
		}
		for _, key := range escapeKeys {
			var want []string
			for _, k := range escapeKeys {
				if strings.HasPrefix(k, key) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			if got := keysOf(list(t, l, key)); !slices.Equal(got, want) {
				t.Errorf("List(%q) = %q, want %q", key, got, want)
			}
		}
	}
	if d, ok := tg.(cache.Deleter); ok {
		if err := d.Delete(t.Context(), escapeKeys); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		for _, key := range escapeKeys {
			if exists(t, tg, key) {
				t.Errorf("Exists(%q) = true after Delete", key)
			}
		}
	}
}

// listKeys are in no order; the dashes and dots sort before "/", so a
// listing that walks directories as it finds them is out of key order.
var listKeys = []string{
	"nix-cache-info",
	"b.narinfo",
	"a.narinfo",
	"nar/2.nar.xz",
	"nar/1.nar.xz",
	"nar/sub/3.nar",
	"nar-x",
	"nar.y",
	"nar0",
	"log/x.drv",
	"log-y",
	"realisations/sha256:abc!out.doi",
	"z",
}

func testList(t *testing.T, tg cache.Target) {
	l := needLister(t, tg)
	if got := list(t, l, ""); len(got) != 0 {
		t.Fatalf("List of an empty target = %+v", got)
	}
	start := time.Now()
	for _, k := range listKeys {
		put(t, tg, k, []byte(k))
	}
	for _, prefix := range []string{"", "n", "nar", "nar/", "nar/1", "nar/sub/", "log", "log/", "realisations/sha256:", "z", "zz", "nothing/"} {
		var want []string
		for _, k := range listKeys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		objs := list(t, l, prefix)
		if got := keysOf(objs); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q\nwant (in key order) %q", prefix, got, want)
		}
		for _, o := range objs {
			if o.Size != int64(len(o.Key)) {
				t.Errorf("List(%q): %q has Size %d, want %d", prefix, o.Key, o.Size, len(o.Key))
			}
			if d := o.LastModified.Sub(start); d < -time.Minute || d > time.Minute+time.Since(start) {
				t.Errorf("List(%q): %q has LastModified %v, not within a minute of now (%v)", prefix, o.Key, o.LastModified, time.Now())
			}
		}
	}
}

func testListRoot(t *testing.T, tg cache.Target) {
	l := needRootLister(t, tg)
	if got := listRoot(t, l); len(got) != 0 {
		t.Fatalf("ListRoot of an empty target = %+v", got)
	}
	var want []string
	for _, k := range listKeys {
		put(t, tg, k, []byte(k))
		if !strings.Contains(k, "/") {
			want = append(want, k)
		}
	}
	slices.Sort(want)
	got := keysOf(listRoot(t, l))
	slices.Sort(got) // RootLister promises no order
	if !slices.Equal(got, want) {
		t.Errorf("ListRoot = %q\nwant %q", got, want)
	}
}

func testListStops(t *testing.T, tg cache.Target) {
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("%02d.narinfo", i))
	}
	putMany(t, tg, keys)
	stop := errors.New("cachetest: stop listing")
	each := func(calls *int) func(cache.ObjectInfo) error {
		return func(cache.ObjectInfo) error {
			*calls++
			if *calls == 3 {
				return stop
			}
			return nil
		}
	}
	ran := false
	if l, ok := tg.(cache.Lister); ok {
		ran = true
		calls := 0
		if err := l.List(t.Context(), "", each(&calls)); err != stop { //nolint:errorlint // fn's error must come back as the very value, unwrapped
			t.Errorf("List with fn failing = %v, want fn's error as it is", err)
		}
		if calls != 3 {
			t.Errorf("List called fn %d times, want 3: it must stop at fn's error", calls)
		}
	}
	if l, ok := tg.(cache.RootLister); ok {
		ran = true
		calls := 0
		if err := l.ListRoot(t.Context(), each(&calls)); err != stop { //nolint:errorlint // as above
			t.Errorf("ListRoot with fn failing = %v, want fn's error as it is", err)
		}
		if calls != 3 {
			t.Errorf("ListRoot called fn %d times, want 3: it must stop at fn's error", calls)
		}
	}
	if !ran {
		t.Skipf("%s is neither a cache.Lister nor a cache.RootLister", tg)
	}
}

// testDirectoryMarkers: the listings show objects only, never the
// directories that nested keys make (file://) or "dir/" objects that S3
// tools create (a backend may refuse such a key).
func testDirectoryMarkers(t *testing.T, tg cache.Target) {
	put(t, tg, "nar/deep/er/x.nar", []byte("x"))
	put(t, tg, "top", []byte("t"))
	for _, marker := range []string{"nar/", "pins/", "nar/deep/"} {
		_ = tg.Put(t.Context(), marker, bytes.NewReader(nil), 0, "application/x-directory")
	}
	ran := false
	if l, ok := tg.(cache.Lister); ok {
		ran = true
		for _, prefix := range []string{"", "nar/", "pins/", "nar/deep/"} {
			for _, o := range list(t, l, prefix) {
				if strings.HasSuffix(o.Key, "/") || (o.Key != "nar/deep/er/x.nar" && o.Key != "top") {
					t.Errorf("List(%q) shows %q", prefix, o.Key)
				}
			}
		}
	}
	if l, ok := tg.(cache.RootLister); ok {
		ran = true
		if got := keysOf(listRoot(t, l)); !slices.Equal(got, []string{"top"}) {
			t.Errorf("ListRoot = %q, want only \"top\"", got)
		}
	}
	if !ran {
		t.Skipf("%s is neither a cache.Lister nor a cache.RootLister", tg)
	}
}

func testDelete(t *testing.T, tg cache.Target) {
	d := needDeleter(t, tg)
	keys := []string{"a.narinfo", "nar/a.nar", "b.narinfo", "nar/b.nar"}
	for _, k := range keys {
		put(t, tg, k, []byte(k))
	}
	if err := d.Delete(t.Context(), []string{"a.narinfo", "nar/a.nar"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, k := range []string{"a.narinfo", "nar/a.nar"} {
		checkAbsent(t, tg, k)
	}
	for _, k := range []string{"b.narinfo", "nar/b.nar"} {
		checkGet(t, tg, k, []byte(k))
	}
	if err := d.Delete(t.Context(), []string{"a.narinfo", "never-was", "nar/never/was"}); err != nil {
		t.Errorf("Delete of missing keys: %v, want nil", err)
	}
	if err := d.Delete(t.Context(), nil); err != nil {
		t.Errorf("Delete of no keys: %v", err)
	}
	if err := d.Delete(t.Context(), []string{"b.narinfo", "b.narinfo"}); err != nil {
		t.Errorf("Delete of a key twice in one call: %v", err)
	}
	checkAbsent(t, tg, "b.narinfo")
	checkGet(t, tg, "nar/b.nar", []byte("nar/b.nar"))
}

func testDeleteMany(t *testing.T, tg cache.Target) {
	d := needDeleter(t, tg)
	const n = 1100 // above S3's 1,000 keys per request
	var keys []string
	for i := range n {
		keys = append(keys, fmt.Sprintf("nar/%04d.nar", i))
	}
	putMany(t, tg, append(keys, "keep.narinfo"))
	if err := d.Delete(t.Context(), keys); err != nil {
		t.Fatalf("Delete of %d keys: %v", n, err)
	}
	for _, k := range []string{keys[0], keys[999], keys[1000], keys[n-1]} {
		if exists(t, tg, k) {
			t.Errorf("Exists(%q) = true after Delete", k)
		}
	}
	if l, ok := tg.(cache.Lister); ok {
		if got := keysOf(list(t, l, "")); !slices.Equal(got, []string{"keep.narinfo"}) {
			t.Errorf("after deleting %d keys List = %d keys (%.5q…), want only keep.narinfo", n, len(got), got)
		}
	}
}

func testOpen(t *testing.T, tg cache.Target) {
	o := needOpener(t, tg)
	for _, n := range suiteSizes {
		key := fmt.Sprintf("nar/open-%d.nar", n)
		b := data(key, n)
		put(t, tg, key, b)
		r, err := o.Open(t.Context(), key)
		if err != nil {
			t.Fatalf("Open(%q): %v", key, err)
		}
		got, err := io.ReadAll(r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("reading Open(%q): %v", key, err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("Open(%q) streamed %d bytes, want %d", key, len(got), n)
		}
	}
	r, err := o.Open(t.Context(), "nar/missing.nar")
	if err == nil {
		r.Close()
	}
	if !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Open of a missing key: %v, want an error wrapping cache.ErrNotFound", err)
	}
}

func testConcurrentPuts(t *testing.T, tg cache.Target) {
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	key := func(i int) string { return fmt.Sprintf("nar/concurrent-%02d.nar", i) }
	size := func(i int) int {
		if i%16 == 0 {
			return 1<<20 + i // some through the large-object path
		}
		return 100 + i
	}
	for i := range n {
		wg.Go(func() {
			b := data(key(i), size(i))
			errs[i] = tg.Put(t.Context(), key(i), bytes.NewReader(b), int64(len(b)), cache.TypeNAR)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put(%q): %v", key(i), err)
		}
	}
	for i := range n {
		checkGet(t, tg, key(i), data(key(i), size(i)))
	}
	if l, ok := tg.(cache.Lister); ok {
		if got := list(t, l, "nar/"); len(got) != n {
			t.Errorf("List after %d concurrent Puts has %d objects", n, len(got))
		}
	}
}

// testCancelled: every operation under a cancelled context fails with an
// error that says so, and that is not permanent (the work may be retried).
func testCancelled(t *testing.T, tg cache.Target) {
	put(t, tg, "there.narinfo", []byte("there"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want an error wrapping context.Canceled", op, err)
		}
		if cache.IsPermanent(err) {
			t.Errorf("%s with a cancelled context: %v is classified permanent", op, err)
		}
	}
	_, err := tg.Exists(ctx, "there.narinfo")
	check("Exists", err)
	_, err = tg.Get(ctx, "there.narinfo")
	check("Get", err)
	for _, n := range []int{10, 3 << 20, 6<<20 + 1} {
		key := fmt.Sprintf("nar/cancelled-%d.nar", n)
		check(fmt.Sprintf("Put of %d bytes", n), tg.Put(ctx, key, bytes.NewReader(data(key, n)), int64(n), cache.TypeNAR))
		if exists(t, tg, key) {
			t.Errorf("Put(%q) with a cancelled context left an object", key)
		}
	}
	nop := func(cache.ObjectInfo) error { return nil }
	if l, ok := tg.(cache.Lister); ok {
		check("List", l.List(ctx, "", nop))
	}
	if l, ok := tg.(cache.RootLister); ok {
		check("ListRoot", l.ListRoot(ctx, nop))
	}
	if o, ok := tg.(cache.Opener); ok {
		r, err := o.Open(ctx, "there.narinfo")
		if err == nil {
			// A lazy stream may fail at its first read instead.
			_, err = io.ReadAll(r)
			r.Close()
		}
		check("Open", err)
	}
	if d, ok := tg.(cache.Deleter); ok {
		check("Delete", d.Delete(ctx, []string{"there.narinfo"}))
		if !exists(t, tg, "there.narinfo") {
			t.Error("Delete with a cancelled context deleted")
		}
	}
	if b, ok := tg.(cache.Barrierer); ok {
		// A Barrier that syncs anyway has kept its promise.
		if err := b.Barrier(ctx); err != nil {
			check("Barrier", err)
		}
	}
}

func testBarrier(t *testing.T, tg cache.Target) {
	b, ok := tg.(cache.Barrierer)
	if !ok {
		// Not a capability every backend has (S3 writes are durable when
		// they return): nothing to test, and not a missing dependency.
		t.Logf("%s is not a cache.Barrierer", tg)
		return
	}
	if err := b.Barrier(t.Context()); err != nil {
		t.Errorf("Barrier before any write: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			key := fmt.Sprintf("nar/barrier-%d.nar", i)
			if err := tg.Put(t.Context(), key, strings.NewReader(key), int64(len(key)), cache.TypeNAR); err != nil {
				t.Errorf("Put(%q): %v", key, err)
				return
			}
			if err := b.Barrier(t.Context()); err != nil {
				t.Errorf("Barrier after Put(%q): %v", key, err)
			}
		})
	}
	wg.Wait()
	if err := b.Barrier(t.Context()); err != nil {
		t.Errorf("Barrier after writes: %v", err)
	}
}

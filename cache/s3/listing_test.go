package s3

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/internal/testenv"
)

// minioS3 is a bucket on a real MinIO with writer credentials.
type minioS3 struct{ *testenv.Cache }

func minioCache(t *testing.T) (*testenv.MinIO, minioS3) {
	m := testenv.StartMinIO(t)
	return m, minioS3{m.NewCache(t, "")}
}

// open returns a new S3 target for the bucket.
func (c minioS3) open(t *testing.T) *Bucket {
	t.Helper()
	env := map[string]string{"AWS_ACCESS_KEY_ID": c.AccessKey, "AWS_SECRET_ACCESS_KEY": c.SecretKey}
	cfg, err := ParseURL(c.S3URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(t.Context(), cfg, Options{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// s3Answering is an S3 target, with writer credentials from the environment,
// for a server that answers with h.
func s3Answering(t *testing.T, h http.HandlerFunc) *Bucket {
	t.Helper()
	clearAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "writer-secret")
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: "http", Region: "us-east-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func collect(t *testing.T, list func(func(cache.ObjectInfo) error) error) []cache.ObjectInfo {
	t.Helper()
	var out []cache.ObjectInfo
	if err := list(func(o cache.ObjectInfo) error { out = append(out, o); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// The presigned, scanned listing gives exactly what minio-go's does, on
// real MinIO: keys that need escaping, directory markers, pages.
func TestListFastMatchesMinio(t *testing.T) {
	_, c := minioCache(t)
	ctx := t.Context()
	fs, ss := c.open(t), c.open(t)
	ss.direct.off.Store(true)
	fs.direct.pageSize = 7 // many pages from few objects

	keys := []string{"nix-cache-info", "a b.narinfo", "plus+sign", "amp&x<y>'\"", "ünïcödé", "pct%41", "tab\there",
		"nar/1.nar.xz", "nar/deep/2.nar", "marker/", "nar/", "pins/p1", "z.narinfo"}
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("%032d.narinfo", i))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, k := range keys {
		g.Go(func() error {
			body := bytes.Repeat([]byte("x"), i)
			return fs.Put(gctx, k, bytes.NewReader(body), int64(len(body)), cache.TypeNAR)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		list func(*Bucket) func(func(cache.ObjectInfo) error) error
		want int
	}{
		{"ListRoot", func(s *Bucket) func(func(cache.ObjectInfo) error) error {
			return func(fn func(cache.ObjectInfo) error) error { return s.ListRoot(ctx, fn) }
		}, 48},
		{"List all", func(s *Bucket) func(func(cache.ObjectInfo) error) error {
			return func(fn func(cache.ObjectInfo) error) error { return s.List(ctx, "", fn) }
		}, 51},
		{"List nar/", func(s *Bucket) func(func(cache.ObjectInfo) error) error {
			return func(fn func(cache.ObjectInfo) error) error { return s.List(ctx, "nar/", fn) }
		}, 2},
	} {
		got, want := collect(t, tc.list(fs)), collect(t, tc.list(ss))
		if len(got) != tc.want || !slices.EqualFunc(got, want, func(a, b cache.ObjectInfo) bool {
			return a.Key == b.Key && a.Size == b.Size && a.LastModified.Equal(b.LastModified) && a.ETag == b.ETag && a.ETag != ""
		}) {
			t.Errorf("%s: presigned listing gave %d objects, minio-go %d (want %d):\n%v\n%v", tc.name, len(got), len(want), tc.want, got, want)
		}
	}
	// A one-PUT object's ETag is the MD5 of its content: what lets a push
	// tell from a listing that a narinfo is the text it saw signed.
	for _, o := range collect(t, func(fn func(cache.ObjectInfo) error) error { return fs.ListRoot(ctx, fn) }) {
		if i := slices.Index(keys, o.Key); i >= 0 {
			if sum := fmt.Sprintf("%x", md5.Sum(bytes.Repeat([]byte("x"), i))); o.ETag != sum {
				t.Errorf("%s: ETag %q, want the MD5 of its content %s", o.Key, o.ETag, sum)
			}
		}
	}
	if fs.direct.off.Load() {
		t.Error("MinIO's answer made the fast listing step aside")
	}
	// fn's error stops the listing and comes back as it is.
	stop := fmt.Errorf("enough")
	n := 0
	if err := fs.ListRoot(ctx, func(cache.ObjectInfo) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("stopping: %v after %d objects, want the callback's own error after 1", err, n)
	}
}

// A server that refuses presigned listings (query authentication) is
// listed through minio-go from then on; one that refuses both ways
// reports minio-go's error, hint included, and is tried again next time.
func TestListFastFallback(t *testing.T) {
	var presigned, headerAuth atomic.Int64
	var allow atomic.Bool
	s := s3Answering(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		if r.URL.Query().Get("X-Amz-Signature") != "" {
			presigned.Add(1)
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>query auth off</Message></Error>`)
			return
		}
		headerAuth.Add(1)
		if !allow.Load() {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`)
			return
		}
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>nix-cache</Name><IsTruncated>false</IsTruncated>`+
			`<Contents><Key>a.narinfo</Key><Size>3</Size><LastModified>2026-11-30T10:00:00.000Z</LastModified></Contents></ListBucketResult>`)
	})
	err := s.ListRoot(t.Context(), func(cache.ObjectInfo) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "lack permission") || s.direct.off.Load() {
		t.Fatalf("both refused: %v (slow %v), want minio-go's AccessDenied with its hint, and the fast way kept", err, s.direct.off.Load())
	}
	allow.Store(true)
	for range 2 {
		got := collect(t, func(fn func(cache.ObjectInfo) error) error { return s.ListRoot(t.Context(), fn) })
		if len(got) != 1 || got[0].Key != "a.narinfo" || got[0].Size != 3 {
			t.Fatalf("through minio-go: %v", got)
		}
	}
	if presigned.Load() != 2 || !s.direct.off.Load() {
		t.Errorf("%d presigned requests, slow %v: want 2 (the refused try, then one more that minio-go answered) and then none", presigned.Load(), s.direct.off.Load())
	}
}

func TestScanListPage(t *testing.T) {
	when := time.Date(2026, 11, 30, 10, 0, 0, 123e6, time.UTC)
	for _, tc := range []struct {
		name, body string
		want       []cache.ObjectInfo
		next       string
		err        string
	}{
		{"url-encoded keys, entities, marker, token",
			`<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>tok&amp;1</NextContinuationToken>` +
				`<Contents><Key>a+b%26c.narinfo</Key><Size>12</Size><LastModified>2026-11-30T10:00:00.123Z</LastModified></Contents>` +
				`<Contents><Key>dir%2F</Key><Size>0</Size></Contents><CommonPrefixes><Prefix>nar%2F</Prefix></CommonPrefixes></ListBucketResult>`,
			[]cache.ObjectInfo{{Key: "a b&c.narinfo", Size: 12, LastModified: when}}, "tok&1", ""},
		{"plain keys with entities",
			`<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>x&lt;y&amp;z+</Key><Size>1</Size></Contents></ListBucketResult>`,
			[]cache.ObjectInfo{{Key: "x<y&z+", Size: 1}}, "", ""},
		{"etag, quoted as entities or plain",
			`<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a.narinfo</Key><ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag><Size>1</Size></Contents>` +
				`<Contents><Key>b.narinfo</Key><ETag>"92eb5ffee6ae2fec3ad71c777531578f-2"</ETag><Size>1</Size></Contents></ListBucketResult>`,
			[]cache.ObjectInfo{{Key: "a.narinfo", Size: 1, ETag: "0cc175b9c0f1b6a831c399e269772661"}, {Key: "b.narinfo", Size: 1, ETag: "92eb5ffee6ae2fec3ad71c777531578f-2"}}, "", ""},
		{"empty bucket", `<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>`, nil, "", ""},
		{"not a listing", `<html>proxy error</html>`, nil, "", "not a ListBucketResult"},
		{"truncated without token", `<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>`, nil, "", "NextContinuationToken"},
		{"bad size", `<ListBucketResult><Contents><Key>k</Key><Size>-x</Size></Contents></ListBucketResult>`, nil, "", "size"},
		{"unterminated", `<ListBucketResult><Contents><Key>k</Key>`, nil, "", "unterminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []cache.ObjectInfo
			next, err := scanListPage([]byte(tc.body), func(o cache.ObjectInfo) error { got = append(got, o); return nil })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || next != tc.next || !slices.EqualFunc(got, tc.want, func(a, b cache.ObjectInfo) bool {
				return a.Key == b.Key && a.Size == b.Size && a.LastModified.Equal(b.LastModified) && a.ETag == b.ETag
			}) {
				t.Fatalf("got %v, next %q, err %v; want %v, next %q", got, next, err, tc.want, tc.next)
			}
		})
	}
}

func FuzzScanListPage(f *testing.F) {
	f.Add([]byte(`<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken><Contents><Key>a%2Bb</Key><Size>1</Size><LastModified>2026-11-30T10:00:00Z</LastModified></Contents></ListBucketResult>`))
	f.Add([]byte(`<ListBucketResult><Contents><Key>&#x41;&amp;</Key></Contents>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		next, err := scanListPage(body, func(o cache.ObjectInfo) error {
			if o.Key == "" || strings.HasSuffix(o.Key, "/") {
				t.Fatalf("scanned a key %q that should have been left out", o.Key)
			}
			return nil
		})
		if err == nil && next == "" && bytes.Contains(body, []byte("<IsTruncated>true</IsTruncated>")) && !bytes.Contains(body, []byte("<NextContinuationToken>")) {
			t.Fatalf("a truncated page without a token ended the listing")
		}
	})
}

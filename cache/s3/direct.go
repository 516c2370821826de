package s3

// The requests a push makes per path (a small PUT, a HEAD) and the GETs of
// gc and verify, sent without minio-go. Its request building, signing and
// response handling cost more client CPU than the request itself. Where
// the bucket lives and for which region to sign stay minio-go's decision,
// read once from a URL it presigns. Anything but a clean answer (success,
// or a plain 404 where that means "absent") is asked again through
// minio-go, so that errors, hints, redirects and region changes are
// handled in one place; a server that refuses our requests but accepts
// minio-go's is left to minio-go from then on.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/nixpushd/nixpushd/cache"
)

// direct sends requests of our own to one bucket. minio-go's client
// presigns the URLs of listing pages and tells where the bucket lives.
type direct struct {
	httpc    *http.Client
	client   *minio.Client
	bucket   string
	creds    *credentials.Credentials
	pageSize int // keys per listing page; 1000, less in tests

	base atomic.Pointer[objBase]
	// off: the server refused our requests where minio-go's worked, so
	// every request goes through minio-go from then on.
	off atomic.Bool
}

// stepAside turns direct requests off for good, once.
func (d *direct) stepAside(what string, args ...any) {
	if !d.off.Swap(true) {
		slog.Debug("the S3 server refuses nixpushd's own "+what+" requests; using minio-go's", append([]any{"bucket", d.bucket}, args...)...)
	}
}

// objBase is where the bucket's objects are addressed, and the signer.
type objBase struct {
	scheme, host string
	path, raw    string // the path up to a key, plain and escaped; ends in "/"
	region       string // the region requests are signed for
}

// objects returns the bucket's address as minio-go would use it. For AWS
// without region= that may cost minio-go one GetBucketLocation, once.
func (d *direct) objects(ctx context.Context) (*objBase, error) {
	if b := d.base.Load(); b != nil {
		return b, nil
	}
	const probe = "k"
	u, err := d.client.Presign(ctx, http.MethodGet, d.bucket, probe, time.Minute, nil)
	if err != nil {
		return nil, err
	}
	// X-Amz-Credential is ACCESSKEY/DAY/REGION/s3/aws4_request.
	scope := strings.Split(u.Query().Get("X-Amz-Credential"), "/")
	if len(scope) < 5 || !strings.HasSuffix(u.Path, "/"+probe) || !strings.HasSuffix(u.EscapedPath(), "/"+probe) {
		return nil, fmt.Errorf("unexpected presigned URL %s", u.Redacted())
	}
	b := &objBase{
		scheme: u.Scheme, host: u.Host,
		path: strings.TrimSuffix(u.Path, probe), raw: strings.TrimSuffix(u.EscapedPath(), probe),
		region: scope[len(scope)-3],
	}
	d.base.Store(b)
	return b, nil
}

// escapeKey is s3utils.EncodePath(key) without its regular expression
// (13 µs a request, 2 % of a burst's CPU) for the keys we write: letters,
// digits and "-._~/" are left as they are by both.
func escapeKey(key string) string {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0) {
			return s3utils.EncodePath(key)
		}
	}
	return key
}

// objResp is a whole, small answer.
type objResp struct {
	status int
	header http.Header
	body   []byte
}

// maxObjBody bounds what is read of an answer: a narinfo or an error.
const maxObjBody = 1 << 20

// object sends method for key with body (nil: none) and reads the answer.
// ok is false when it did not send the request (the server refuses these
// requests, the credentials are not for Signature V4 or cannot be had):
// the caller then asks minio-go. An error is the request's own, from the
// network (an endpoint that does not answer, a certificate): asking again
// through minio-go would only wait for it twice.
func (d *direct) object(ctx context.Context, method, key string, body []byte, contentType string) (r objResp, ok bool, err error) {
	if d.off.Load() {
		return r, false, nil
	}
	b, err := d.objects(ctx)
	if err != nil {
		return r, false, nil
	}
	v, err := d.creds.GetWithContext(d.client.CredContext())
	if err != nil || v.SignerType != credentials.SignatureV4 && v.SignerType != credentials.SignatureDefault || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return r, false, nil
	}
	u := &url.URL{Scheme: b.scheme, Host: b.host, Path: b.path + key, RawPath: b.raw + escapeKey(key)}
	req := (&http.Request{Method: method, URL: u, Host: b.host, Header: make(http.Header, 8),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
	payload := emptyPayloadHash
	if body != nil {
		sum := md5.Sum(body)
		req.Header.Set("Content-Md5", base64.StdEncoding.EncodeToString(sum[:]))
		req.Header.Set("Content-Type", contentType)
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		// The MD5 guards the body; Nix checks the NAR against the signed
		// narinfo anyway.
		payload = unsignedPayload
	}
	req = sign(req, v, b.region, payload)
	resp, err := d.httpc.Do(req)
	if err != nil {
		return r, true, err
	}
	defer resp.Body.Close()
	r.status, r.header = resp.StatusCode, resp.Header
	if method != http.MethodHead {
		r.body, err = io.ReadAll(io.LimitReader(resp.Body, maxObjBody))
		if err != nil {
			return r, true, err
		}
	}
	if r.status >= 500 {
		// A server that is overloaded or failing: retried after a
		// backoff, not asked again at once through minio-go.
		return r, true, r.asError(d.bucket, key)
	}
	return r, true, nil
}

// asError is the answer as minio-go would report it.
func (r objResp) asError(bucket, key string) error {
	return responseError(r.status, r.header, r.body, bucket, key)
}

// refused says whether an answer may mean the server will not take our
// requests at all (signing, addressing, region), as opposed to an answer
// about this object or a passing failure.
func (r objResp) refused() bool {
	switch r.status {
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusBadRequest, http.StatusForbidden, http.StatusNotImplemented:
		return true
	}
	return false
}

// errorCode is the S3 error code of an answer.
func (r objResp) errorCode() string {
	return responseError(r.status, r.header, r.body, "", "").Code
}

// settle records how minio-go fared with a request ours got r for: if it
// succeeded where ours was refused, our requests step aside for good.
func (d *direct) settle(r objResp, asked bool, minioErr error) {
	if asked && r.refused() && minioErr == nil {
		d.stepAside("object", "status", r.status)
	}
}

// Listings without minio-go's XML decoding. Decoding a listed object into
// minio.ObjectInfo costs ~24 µs of CPU, a sixth of a whole HEAD request,
// which made listing the cache barely cheaper than asking about each key.
// A ListObjectsV2 page is fetched through a URL presigned by minio-go (so
// signing, region and bucket addressing stay its business) and scanned
// for the three fields we use (listing.go).

// list lists the objects under prefix (with delimiter "/", only those
// directly in it) and calls fn for each object, in key order. ran says
// whether it listed; when the server refuses the first page (refused),
// the caller lists through minio-go and, if that works, calls stepAside.
// An error from fn is returned as it is, the server's through wrap.
func (d *direct) list(ctx context.Context, prefix string, recursive bool, fn func(cache.ObjectInfo) error, wrap func(error) error) (ran, refused bool, err error) {
	if d.off.Load() {
		return false, false, nil
	}
	var fnErr error
	each := func(o cache.ObjectInfo) error {
		fnErr = fn(o)
		return fnErr
	}
	token := ""
	for page := 0; ; page++ {
		q := url.Values{}
		q.Set("list-type", "2")
		q.Set("encoding-type", "url")
		q.Set("max-keys", strconv.Itoa(d.pageSize))
		q.Set("prefix", prefix)
		if !recursive {
			q.Set("delimiter", "/")
		}
		if token != "" {
			q.Set("continuation-token", token)
		}
		body, err := d.listPage(ctx, q)
		if err != nil {
			var resp minio.ErrorResponse
			if page == 0 && errors.As(err, &resp) && (resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotImplemented) {
				// Perhaps only this way of asking is refused (query
				// authentication): let minio-go try; if it fails too,
				// its error is the one to report.
				return false, true, nil
			}
			return true, false, wrap(err)
		}
		next, err := scanListPage(body, each)
		if fnErr != nil {
			return true, false, fnErr
		}
		if err != nil {
			return true, false, wrap(err)
		}
		if next == "" {
			return true, false, ctx.Err()
		}
		token = next
	}
}

// listPage fetches one page of a listing.
func (d *direct) listPage(ctx context.Context, q url.Values) ([]byte, error) {
	u, err := d.client.Presign(ctx, http.MethodGet, d.bucket, "", 15*time.Minute, q)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp.StatusCode, resp.Header, body, d.bucket, "")
	}
	return body, nil
}

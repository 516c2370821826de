package upload

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
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// objBase is where the bucket's objects are addressed, and the signer.
type objBase struct {
	scheme, host string
	path, raw    string // the path up to a key, plain and escaped; ends in "/"
	sig          *sigV4
}

// objects returns the bucket's address as minio-go would use it. For AWS
// without region= that may cost minio-go one GetBucketLocation, once.
func (s *S3) objects(ctx context.Context) (*objBase, error) {
	if b := s.objBase.Load(); b != nil {
		return b, nil
	}
	const probe = "k"
	u, err := s.client.Presign(ctx, http.MethodGet, s.cfg.Bucket, probe, time.Minute, nil)
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
		sig: &sigV4{region: scope[len(scope)-3]},
	}
	s.objBase.Store(b)
	return b, nil
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
func (s *S3) object(ctx context.Context, method, key string, body []byte, contentType string) (r objResp, ok bool, err error) {
	if s.slowObjects.Load() || s.httpc == nil {
		return r, false, nil
	}
	b, err := s.objects(ctx)
	if err != nil {
		return r, false, nil
	}
	v, err := s.creds.GetWithContext(s.client.CredContext())
	if err != nil || v.SignerType != credentials.SignatureV4 && v.SignerType != credentials.SignatureDefault || v.AccessKeyID == "" {
		return r, false, nil
	}
	u := &url.URL{Scheme: b.scheme, Host: b.host, Path: b.path + key, RawPath: b.raw + s3Escape(key)}
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
	b.sig.sign(req, v.AccessKeyID, v.SecretAccessKey, v.SessionToken, payload, time.Now())
	resp, err := s.httpc.Do(req)
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
		return r, true, r.asError(s.cfg.Bucket, key)
	}
	return r, true, nil
}

// asError is the answer as minio-go would report it.
func (r objResp) asError(bucket, key string) error {
	return responseError(r.status, r.header, r.body, bucket, key)
}

// responseError is an S3 error answer as minio-go would report it: the
// code and message of its XML body, or, without one, MinIO's error-code
// header or the status, and the start of the body.
func responseError(status int, header http.Header, body []byte, bucket, key string) minio.ErrorResponse {
	e := minio.ErrorResponse{}
	if xml.Unmarshal(body, &e) != nil || e.Code == "" {
		statusLine := fmt.Sprintf("%d %s", status, http.StatusText(status))
		e.Code = cmp.Or(header.Get("X-Minio-Error-Code"), statusLine)
		e.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("%d %s", status, http.StatusText(status))
	}
	e.StatusCode, e.BucketName, e.Key = status, bucket, key
	e.Server, e.RequestID = header.Get("Server"), header.Get("X-Amz-Request-Id")
	return e
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
func (s *S3) settle(r objResp, asked bool, minioErr error) {
	if asked && r.refused() && minioErr == nil && !s.slowObjects.Swap(true) {
		slog.Debug("the S3 server refuses nixpushd's own object requests; using minio-go's", "target", s.cfg.String(), "status", r.status)
	}
}

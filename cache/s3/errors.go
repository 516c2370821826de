package s3

import (
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixpushd/nixpushd/cache"
)

// explainer turns what minio-go or the server said into an error that
// names the object and, for the usual set-up mistakes, the fix.
type explainer struct {
	cfg Config
	// credSource says where the credentials came from, for hints.
	credSource string
	creds      *credentials.Credentials
	refreshes  bool // creds are role sessions that renew themselves
	caFile     string
}

// wrap names the object and, for the mistakes people make while setting a
// cache up, says what to fix. Those mistakes concern the whole target, so
// they are permanent configuration errors: retrying the same request
// cannot help, and the daemon reports itself degraded until fixed.
func (s *explainer) wrap(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	where := fmt.Sprintf("%s s3://%s/%s", op, s.cfg.Bucket, key)
	if s.cfg.Endpoint != "" {
		where += " at " + s.cfg.Scheme + "://" + s.cfg.Endpoint
	}
	if hint, ok := ConnectionHint(err, s.cfg, s.caFile); ok {
		// The hint says it all; the request URL in err would only repeat
		// where, so keep the innermost cause.
		return &cache.PermanentError{Err: fmt.Errorf("%s: %s", where, hint), Config: true}
	}
	resp := minio.ToErrorResponse(err)
	var hint string
	switch resp.Code {
	case "AccessDenied":
		if s.credSource == SourceAnonymous {
			if op == "list" {
				hint = fmt.Sprintf("anonymous access (no credentials found) may not list bucket %q: its policy grants anonymous users no s3:ListBucket (s3:GetObject alone lets clients read, not list). "+
					"Give the credentials of a user with s3:ListBucket (--credentials-file FILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or name the store paths to check: verify --root PATH walks their closures without listing", s.cfg.Bucket)
			} else {
				hint = fmt.Sprintf("anonymous access (no credentials found) may not read bucket %q: its policy grants anonymous users no s3:GetObject; give credentials (--credentials-file FILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", s.cfg.Bucket)
			}
			break
		}
		// S3 answers AccessDenied, not NoSuchBucket, to a user whose
		// policy does not cover a bucket, whether the bucket exists or not.
		hint = fmt.Sprintf("bucket %q does not exist or the credentials from %s lack permission on it; S3 cannot tell these apart for a user without rights on the bucket: "+
			"check the bucket name in the URL, and that the writer policy grants s3:GetObject, s3:PutObject and s3:ListBucket on arn:aws:s3:::%s and arn:aws:s3:::%s/*",
			s.cfg.Bucket, s.credSource, s.cfg.Bucket, s.cfg.Bucket)
	case "NoSuchBucket":
		hint = fmt.Sprintf("bucket %q does not exist; check its name in the URL, or create it (mc mb ALIAS/%s, or nixpushd init)", s.cfg.Bucket, s.cfg.Bucket)
	case "InvalidAccessKeyId":
		hint = "the access key or secret is wrong: the server does not know the access key from " + s.credSource
	case "SignatureDoesNotMatch":
		hint = "the access key or secret is wrong: the secret does not match the access key from " + s.credSource
	case "ExpiredToken", "InvalidToken":
		if s.refreshes {
			// A role session that lapsed (a suspended machine): fetch a
			// new one for the next try instead of giving up.
			s.creds.Expire()
			return fmt.Errorf("%s: %w (renewing the session from %s)", where, err, s.credSource)
		}
		hint = "the session token from " + s.credSource + " has expired or is invalid; renew it"
	}
	if hint != "" {
		return &cache.PermanentError{Err: fmt.Errorf("%s: %w (%s)", where, err, hint), Config: true}
	}
	// A server that is down or restarting may come back: retried, but
	// the message says where to look if it does not.
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w (nothing listens there: check endpoint= in the URL and that the S3 server is running)", where, err)
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Errorf("%s: %w (unknown host: check endpoint= in the URL)", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// wrapDelete explains the one permission the writer deliberately lacks.
func (s *explainer) wrapDelete(key string, err error) error {
	if minio.ToErrorResponse(err).Code == "AccessDenied" || minio.ToErrorResponse(err).StatusCode == http.StatusForbidden {
		return &cache.PermanentError{Config: true, Err: fmt.Errorf("delete s3://%s/%s: %w (these credentials lack s3:DeleteObject on arn:aws:s3:::%s/*; gc needs its own credentials with that permission, see the nixgc policy in docs/operations.md, Keeping the cache small)", s.cfg.Bucket, key, err, s.cfg.Bucket)}
	}
	return s.wrap("delete", key, err)
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

package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/nixpushd/nixpushd/cache/s3"
)

// Problem is a failure the operator must fix: one line naming the problem
// and the fix. It never holds a secret.
type Problem struct{ Msg string }

func (p *Problem) Error() string { return p.Msg }

func problemf(format string, args ...any) error {
	return &Problem{Msg: fmt.Sprintf(format, args...)}
}

// connectProblem explains an error from the first request to the server:
// the endpoint cannot be reached or spoken to, or the admin credentials are
// wrong. It returns nil for an error it does not recognise.
func connectProblem(err error, target s3.Config, caFile, host, adminKey, adminSource string) error {
	if err == nil {
		return nil
	}
	// Certificates and http/https mix-ups: the same words as push and the daemon.
	if hint, ok := s3.ConnectionHint(err, target, caFile); ok {
		return problemf("%s", hint)
	}
	var dns *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dns):
		return problemf("cannot find the S3 server %s (DNS: %s): check endpoint= in --to", host, dns.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return problemf("cannot connect to the S3 server %s (connection refused): check endpoint= in --to and that the server is running", host)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return problemf("no answer from the S3 server %s: check endpoint= in --to and the firewall", host)
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "InvalidAccessKeyId":
		return problemf("the S3 server %s does not know the admin access key %q (from %s): use the MinIO root user or an account that may create buckets and users", host, adminKey, adminSource)
	case "SignatureDoesNotMatch":
		return problemf("wrong secret for the admin access key %q (from %s): the S3 server %s rejects the signature", adminKey, adminSource, host)
	case "InvalidTokenId", "ExpiredToken", "ExpiredTokenException":
		return problemf("the admin session token (from %s) is invalid or expired: get fresh credentials", adminSource)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return problemf("cannot connect to the S3 server %s (%v): check endpoint= in --to", host, opErr.Err)
	}
	return nil
}

// s3Problem explains any other S3 error in one line: what failed and
// what the server said.
func s3Problem(op, host string, err error) error {
	var p *Problem
	if errors.As(err, &p) {
		return err
	}
	resp := minio.ToErrorResponse(err)
	if resp.Code == "AccessDenied" {
		return problemf("%s: the S3 server %s denied it to the admin credentials: use the MinIO root user or an account allowed to manage the bucket", op, host)
	}
	if resp.Code != "" && resp.Message != "" {
		return problemf("%s: the S3 server %s said %s: %s", op, host, resp.Code, strings.TrimSuffix(resp.Message, "."))
	}
	return problemf("%s: %v", op, err)
}

package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// HTTPTransport returns a transport for an S3 endpoint that trusts the
// system roots (and SSL_CERT_FILE) plus the PEM certificates in caFile
// (none when empty): a private CA is added to the roots, never a
// replacement for them.
func HTTPTransport(caFile string) (*http.Transport, error) {
	t, err := minio.DefaultTransport(true)
	if err != nil {
		return nil, err
	}
	// minio-go keeps 16 idle connections per host, fewer than the
	// requests nixpushd has in flight (--io-jobs, 32): each lull closed
	// the rest, and the next burst dialled (and over https, shook hands)
	// again, on both sides.
	t.MaxIdleConnsPerHost = t.MaxIdleConns
	if caFile == "" {
		return t, nil
	}
	system := t.TLSClientConfig.RootCAs
	r := &caReloader{path: caFile, base: func() *x509.CertPool {
		if system != nil {
			return system.Clone()
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil
		}
		return pool
	}}
	r.stamp, _ = stampOf(caFile)
	pool, err := r.load()
	if err != nil {
		return nil, err
	}
	r.pool = pool
	t.TLSClientConfig.RootCAs = pool
	// Each new connection takes the pool as it is now, so that a CA file
	// fixed while the daemon runs is read again (the degraded probe's
	// next handshake trusts it). Through a proxy, the transport shakes
	// hands itself, with the pool read at start.
	base, dial := t.TLSClientConfig, t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second}).DialContext
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		cfg.RootCAs = r.current()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		hctx := ctx
		if d := t.TLSHandshakeTimeout; d > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
	return t, nil
}

// errHTTPServer is the text net/http gives, without an exported error,
// when an https request is answered in plain http.
const errHTTPServer = "server gave HTTP response to HTTPS client"

// errHTTPSServer is what a Go TLS server (MinIO) answers to plain http.
const errHTTPSServer = "Client sent an HTTP request to an HTTPS server"

// ConnectionHint explains the failures that make every request to the
// endpoint fail the same way: an untrusted, expired or misnamed server
// certificate, or http and https mixed up. ok is false for anything else.
func ConnectionHint(err error, cfg Config, caFile string) (hint string, ok bool) {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		trusted := "the system roots"
		if caFile != "" {
			trusted = "--ca-file " + caFile + " or the system roots"
		}
		return fmt.Sprintf("the server's certificate (%s) is not trusted: its CA is not in %s; "+
			"give that CA with --ca-file CA.pem (NixOS module: services.nixpushd.caFile), "+
			"or trust it system-wide (NixOS: security.pki.certificateFiles; elsewhere the system trust store, "+
			"e.g. update-ca-certificates, or SSL_CERT_FILE)", certName(unknown.Cert), trusted), true
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's certificate is for %s, not for %q; use an endpoint= name the certificate holds, "+
			"or reissue the certificate with %s in its subjectAltName", certNames(hostname.Certificate), hostname.Host, hostname.Host), true
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return expiredHint(invalid.Cert), true
	case errors.As(err, &invalid):
		return fmt.Sprintf("the server's certificate is not valid here (%v); fix the certificate on the server", invalid), true
	case errors.As(err, &verify):
		return fmt.Sprintf("the server's certificate could not be verified (%v); fix the certificate on the server or give its CA with --ca-file", verify.Err), true
	case strings.Contains(err.Error(), errHTTPServer):
		if cfg.SchemeGiven {
			return fmt.Sprintf("%s speaks plain http, not https: change scheme=https to scheme=http in the --to URL", cfg.Endpoint), true
		}
		return fmt.Sprintf("%s speaks plain http, not https: add &scheme=http to the --to URL", cfg.Endpoint), true
	case cfg.Scheme == "http" && (strings.Contains(err.Error(), errHTTPSServer) || bareBadRequest(err) && speaksTLS(cfg.Endpoint)):
		return fmt.Sprintf("%s speaks https, not plain http: remove scheme=http from the --to URL (and give a private CA with --ca-file)", cfg.Endpoint), true
	}
	return "", false
}

// bareBadRequest is a 400 without any of the headers an S3 server sends:
// what a TLS port answers to plain http. minio-go loses the body that
// says so on HEAD requests.
func bareBadRequest(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusBadRequest && resp.RequestID == "" && resp.Server == ""
}

// speaksTLS reports whether endpoint completes a TLS handshake. Only the
// protocol is probed: nothing is sent over the connection, so the
// certificate is not checked here (the https request will check it).
func speaksTLS(endpoint string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // protocol probe only
	conn, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// expiredHint says when the certificate expired, or that it is not valid
// yet: the latter is usually this machine's clock.
func expiredHint(c *x509.Certificate) string {
	now := time.Now()
	if c == nil {
		return "the server's certificate has expired or is not yet valid; renew it on the server, or check this machine's clock"
	}
	if now.Before(c.NotBefore) {
		return fmt.Sprintf("the server's certificate (%s) is not valid until %s, and it is %s here; check this machine's clock",
			certName(c), c.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("the server's certificate (%s) expired on %s; renew it on the server (MinIO reads it from its certs dir, public.crt)",
		certName(c), c.NotAfter.UTC().Format(time.RFC3339))
}

// certName names a certificate by subject and issuer, as an operator
// would look it up.
func certName(c *x509.Certificate) string {
	if c == nil {
		return "unknown certificate"
	}
	return fmt.Sprintf("for %s, issued by %q", certNames(c), c.Issuer.CommonName)
}

// certNames lists the names a certificate is valid for.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "no name"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) == 0 {
		return "no name"
	}
	return strings.Join(names, ", ")
}

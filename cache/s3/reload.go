package s3

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// fileStamp tells whether a file changed since it was read: an edit in
// place or a replacing rename changes its mtime or size.
type fileStamp struct {
	mtime time.Time
	size  int64
}

func stampOf(path string) (fileStamp, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{st.ModTime(), st.Size()}, true
}

// envFileCreds are the keys of a --credentials-file, read again when the
// file changes: fixing a wrong secret needs no restart, and the degraded
// probe's next request uses the new keys. A file that cannot be read, or
// lacks a key, leaves the last good keys in use until it is fixed.
type envFileCreds struct {
	path string
	read func(path string) (map[string]string, error)

	mu    sync.Mutex
	stamp fileStamp
	v     credentials.Value
}

func newEnvFileCreds(path string, read func(string) (map[string]string, error), env map[string]string) *envFileCreds {
	p := &envFileCreds{path: path, read: read, v: envValue(env)}
	p.stamp, _ = stampOf(path)
	return p
}

func envValue(env map[string]string) credentials.Value {
	return credentials.Value{AccessKeyID: env["AWS_ACCESS_KEY_ID"], SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"],
		SessionToken: env["AWS_SESSION_TOKEN"], SignerType: credentials.SignatureV4}
}

// IsExpired is asked before each request: one stat.
func (p *envFileCreds) IsExpired() bool {
	st, ok := stampOf(p.path)
	p.mu.Lock()
	defer p.mu.Unlock()
	return ok && st != p.stamp
}

func (p *envFileCreds) RetrieveWithCredContext(*credentials.CredContext) (credentials.Value, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, _ := stampOf(p.path)
	env, err := p.read(p.path)
	if err == nil && (env["AWS_ACCESS_KEY_ID"] == "" || env["AWS_SECRET_ACCESS_KEY"] == "") {
		err = errors.New("no AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY line")
	}
	if err != nil {
		// Keep the stamp: the next request looks again.
		slog.Warn("credentials file changed but cannot be used; keeping the keys read before", "file", p.path, "err", err)
		return p.v, nil
	}
	if v := envValue(env); v.AccessKeyID != p.v.AccessKeyID || v.SecretAccessKey != p.v.SecretAccessKey || v.SessionToken != p.v.SessionToken {
		slog.Info("credentials file changed: using its keys", "file", p.path, "access_key", v.AccessKeyID)
		p.v = v
	}
	p.stamp = st
	return p.v, nil
}

func (p *envFileCreds) Retrieve() (credentials.Value, error) { return p.RetrieveWithCredContext(nil) }

// caReloader holds the pool of --ca-file plus the system roots, read
// again when the file changes, so that a CA fixed after start is trusted
// without a restart.
type caReloader struct {
	path string
	base func() *x509.CertPool // the system roots, nil for an empty pool

	mu    sync.Mutex
	stamp fileStamp
	pool  *x509.CertPool
}

// load reads the CA file into a fresh pool.
func (r *caReloader) load() (*x509.CertPool, error) {
	pem, err := os.ReadFile(r.path)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := r.base()
	if pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate found in it (want a -----BEGIN CERTIFICATE----- block)", r.path)
	}
	return pool, nil
}

// current is the pool to verify with: the file's new contents when it
// changed and still holds a certificate, else the last good pool.
func (r *caReloader) current() *x509.CertPool {
	st, ok := stampOf(r.path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok && st != r.stamp {
		if pool, err := r.load(); err == nil {
			r.pool, r.stamp = pool, st
			slog.Info("CA file changed: trusting its certificates", "file", r.path)
		} else {
			slog.Warn("CA file changed but cannot be used; keeping the certificates read before", "file", r.path, "err", err)
		}
	}
	return r.pool
}

package s3

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/internal/testenv"
)

// fakeS3 answers every request 404, like an empty bucket: enough for an
// existence check to succeed once the connection does.
func fakeS3(t *testing.T, cert *testenv.ServerCert) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	// The handshake failures are the point; keep them out of the output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// Each certificate problem, and http and https mixed up, is a permanent
// configuration error at the first request, in one line that names the
// problem and the fix.
func TestCertificateErrors(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("SSL_CERT_FILE", "")
	ca := testenv.NewCA(t)
	now := time.Now()
	ip := []string{"127.0.0.1"}
	for _, tc := range []struct {
		name   string
		cert   *testenv.ServerCert // nil: plain http
		scheme string
		caFile string
		want   []string
	}{
		{"untrusted", ca.Issue(t, testenv.CertOpts{Hosts: ip}), "https", "",
			[]string{"not trusted: its CA is not in the system roots", "--ca-file CA.pem", "services.nixpushd.caFile", "security.pki.certificateFiles", "SSL_CERT_FILE"}},
		{"untrusted with another CA given", ca.Issue(t, testenv.CertOpts{Hosts: ip}), "https", testenv.NewCA(t).File,
			[]string{"not trusted: its CA is not in --ca-file"}},
		{"hostname mismatch", ca.Issue(t, testenv.CertOpts{Hosts: []string{"minio.homelab.local"}}), "https", ca.File,
			[]string{`is for minio.homelab.local, not for "127.0.0.1"`, "subjectAltName"}},
		{"expired", ca.Issue(t, testenv.CertOpts{Hosts: ip, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}), "https", ca.File,
			[]string{"expired on " + now.Add(-time.Hour).UTC().Format("2006-01-02"), "renew it"}},
		{"not yet valid", ca.Issue(t, testenv.CertOpts{Hosts: ip, NotBefore: now.Add(time.Hour)}), "https", ca.File,
			[]string{"not valid until", "clock"}},
		{"http endpoint as https", nil, "https", "",
			[]string{"speaks plain http", "add &scheme=http to the --to URL"}},
		{"http endpoint as scheme=https", nil, "https", "",
			[]string{"speaks plain http", "change scheme=https to scheme=http in the --to URL"}},
		{"https endpoint as http", ca.Issue(t, testenv.CertOpts{Hosts: ip}), "http", "",
			[]string{"speaks https", "remove scheme=http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeS3(t, tc.cert)
			s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: tc.scheme, SchemeGiven: strings.Contains(tc.name, "scheme=")}, Options{CAFile: tc.caFile})
			if err != nil {
				t.Fatal(err)
			}
			calls := 0
			err = retry.Policy{Attempts: 5, Delay: func(int) time.Duration { return time.Second }}.Do(t.Context(), func() error {
				calls++
				_, err := s.Exists(t.Context(), "nix-cache-info")
				return err
			})
			if err == nil {
				t.Fatal("no error")
			}
			if !cache.IsConfig(err) || calls != 1 {
				t.Errorf("not a permanent configuration error (IsConfig %v, %d tries): %v", cache.IsConfig(err), calls, err)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append(tc.want, "check s3://nix-cache/nix-cache-info at "+tc.scheme+"://"+srv.Listener.Addr().String()) {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line:\n%s", msg)
			}
		})
	}
}

// --ca-file adds to the roots (here SSL_CERT_FILE's) instead of replacing
// them: servers signed by either CA are trusted.
func TestCAFileAddsToRoots(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	systemCA, privateCA := testenv.NewCA(t), testenv.NewCA(t)
	t.Setenv("SSL_CERT_FILE", systemCA.File)
	for name, ca := range map[string]*testenv.CA{"root from SSL_CERT_FILE": systemCA, "root from --ca-file": privateCA} {
		t.Run(name, func(t *testing.T) {
			srv := fakeS3(t, ca.Issue(t, testenv.CertOpts{Hosts: []string{"127.0.0.1"}}))
			s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: "https"}, Options{CAFile: privateCA.File})
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := s.Exists(t.Context(), "nix-cache-info"); ok || err != nil {
				t.Errorf("Exists = %v, %v; want false, nil", ok, err)
			}
		})
	}
}

// A --ca-file that is missing or holds no certificate fails at once.
func TestBadCAFile(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "key.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "no such file",
		notPEM:                            "no PEM certificate",
	} {
		_, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: "127.0.0.1:1", Scheme: "https"}, Options{CAFile: file})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--ca-file") || !cache.IsConfig(err) {
			t.Errorf("--ca-file %s: %v, want a configuration error with %q", file, err, want)
		}
	}
	var pe *cache.PermanentError
	_, err := New(t.Context(), Config{Bucket: "b", Endpoint: "127.0.0.1:1", Scheme: "https"}, Options{CAFile: notPEM})
	if !errors.As(err, &pe) {
		t.Errorf("%v is not a cache.PermanentError", err)
	}
}

package s3

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A --ca-file that did not hold the server's CA at start is read again
// when it changes: the same transport then trusts the server.
func TestCAFileReread(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writePEM := func(der []byte) {
		t.Helper()
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePEM(otherCA(t))
	tr, err := HTTPTransport(ca)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func() error {
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		tr.CloseIdleConnections()
		return err
	}
	err = get()
	if err == nil {
		t.Fatal("a CA file without the server's CA: the request succeeded")
	}
	if hint, ok := ConnectionHint(err, Config{Endpoint: strings.TrimPrefix(srv.URL, "https://"), Scheme: "https"}, ca); !ok || !strings.Contains(hint, "is not trusted") {
		t.Errorf("hint for an untrusted certificate: %q, %v (error %v)", hint, ok, err)
	}
	writePEM(srv.Certificate().Raw)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(ca, future, future)
	if err := get(); err != nil {
		t.Errorf("after the CA file was fixed: %v", err)
	}
	// A file that no longer holds a certificate keeps the last good pool.
	os.WriteFile(ca, []byte("garbage"), 0o644)
	if err := get(); err != nil {
		t.Errorf("after the CA file was broken: %v, want the last good CA kept", err)
	}
}

// otherCA is a self-signed CA certificate that signed nothing.
func otherCA(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

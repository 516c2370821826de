package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a private certificate authority made at test time, like the one
// the seed guides make for MinIO at https://minio.homelab.local.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate; File holds it (for --ca-file,
	// ssl-cert-file or SSL_CERT_FILE).
	PEM  []byte
	File string
	// Pool trusts this CA only.
	Pool *x509.CertPool
}

// CertOpts say what a server certificate is for and when it is valid.
type CertOpts struct {
	// Hosts are IP addresses or DNS names (the subjectAltName).
	Hosts []string
	// NotBefore/NotAfter default to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
}

// ServerCert is a certificate and key signed by a CA.
type ServerCert struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
}

// NewCA makes a CA whose certificate is written into a temp dir.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := newCA(t.TempDir(), "nixpushd test CA")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return ca
}

// newCA makes a CA named name and writes its certificate to dir/ca.pem.
func newCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " " + randHex(4)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		File: filepath.Join(dir, "ca.pem"), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	if err := os.WriteFile(ca.File, ca.PEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// Issue signs a server certificate.
func (ca *CA) Issue(t testing.TB, o CertOpts) *ServerCert {
	t.Helper()
	c, err := ca.issue(o)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return c
}

func (ca *CA) issue(o CertOpts) (*ServerCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "nixpushd test server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if !o.NotBefore.IsZero() {
		tmpl.NotBefore = o.NotBefore
	}
	if !o.NotAfter.IsZero() {
		tmpl.NotAfter = o.NotAfter
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(o.Hosts) > 0 {
		tmpl.Subject.CommonName = o.Hosts[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("creating server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	s := &ServerCert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if s.TLS, err = tls.X509KeyPair(s.CertPEM, s.KeyPEM); err != nil {
		return nil, err
	}
	return s, nil
}

// WriteMinIO writes the certificate where `minio server --certs-dir DIR`
// reads it: DIR/public.crt and DIR/private.key.
func (s *ServerCert) WriteMinIO(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "public.crt"), s.CertPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "private.key"), s.KeyPEM, 0o600)
}

package s3

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// S3's answers that concern the whole target are configuration errors
// whose hint names the bucket and where the credentials came from; a
// server error stays transient.
func TestS3ErrorHints(t *testing.T) {
	for _, tc := range []struct {
		code   string
		status int
		config bool
		want   []string
	}{
		{"AccessDenied", http.StatusForbidden, true, []string{`bucket "nix-cache" does not exist or the credentials from --credentials-file /etc/nixpushd/s3.env lack permission`, "arn:aws:s3:::nix-cache/*"}},
		{"NoSuchBucket", http.StatusNotFound, true, []string{`bucket "nix-cache" does not exist`, "mc mb"}},
		{"InvalidAccessKeyId", http.StatusForbidden, true, []string{"access key or secret is wrong", "does not know the access key from --credentials-file /etc/nixpushd/s3.env"}},
		{"SignatureDoesNotMatch", http.StatusForbidden, true, []string{"access key or secret is wrong", "secret does not match the access key from --credentials-file /etc/nixpushd/s3.env"}},
		{"ExpiredToken", http.StatusBadRequest, true, []string{"session token from --credentials-file /etc/nixpushd/s3.env has expired"}},
		{"InternalError", http.StatusInternalServerError, false, []string{"get s3://nix-cache/nix-cache-info"}},
	} {
		t.Run(tc.code, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.Header().Set("X-Amz-Request-Id", "test")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s from the server</Message><BucketName>nix-cache</BucketName><RequestId>test</RequestId></Error>`, tc.code, tc.code)
			}))
			defer srv.Close()
			s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: "http"},
				Options{Env: map[string]string{"AWS_ACCESS_KEY_ID": "writer", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}, EnvFile: "/etc/nixpushd/s3.env"})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CredentialSource(); got != "--credentials-file /etc/nixpushd/s3.env" {
				t.Errorf("CredentialSource() = %q", got)
			}
			_, err = s.Get(t.Context(), "nix-cache-info")
			if err == nil {
				t.Fatal("no error")
			}
			if cache.IsConfig(err) != tc.config || cache.IsPermanent(err) != tc.config {
				t.Errorf("IsConfig %v, IsPermanent %v, want %v: %v", cache.IsConfig(err), cache.IsPermanent(err), tc.config, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t-value") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error leaks the secret or spans lines:\n%v", err)
			}
		})
	}
}

// A role session the server calls expired (say, after the machine slept)
// is renewed for the next try instead of failing the target for good.
func TestRoleSessionRenewed(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	imds := fakeIMDS(t, "roleuser", time.Now().Add(time.Hour))
	setIMDS(t, imds.URL, time.Second)
	var tokens []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Amz-Security-Token")
		mu.Lock()
		tokens = append(tokens, tok)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		code, status := "NoSuchKey", http.StatusNotFound
		if tok == "session-1" {
			code, status = "ExpiredToken", http.StatusBadRequest
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `<Error><Code>%s</Code><Message>%s</Message><RequestId>r</RequestId></Error>`, code, code)
	}))
	defer srv.Close()
	s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: "http"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(t.Context(), "nix-cache-info")
	if err == nil || cache.IsPermanent(err) || !strings.Contains(err.Error(), "renewing the session from instance role (IMDS)") {
		t.Fatalf("first try: %v (permanent %v), want a transient error that renews the session", err, cache.IsPermanent(err))
	}
	if _, err = s.Get(t.Context(), "nix-cache-info"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("second try: %v, want not found with a new session", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tokens) < 2 || tokens[len(tokens)-1] != "session-2" {
		t.Errorf("session tokens sent: %q, want session-1 then session-2", tokens)
	}
}

// A server that is not there may be restarting: retried, not a
// configuration error, but the message says where to look.
func TestS3UnreachableHints(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, tc := range []struct{ endpoint, want string }{
		{closed, "nothing listens there: check endpoint= in the URL and that the S3 server is running"},
		{"no-such-host.invalid", "unknown host: check endpoint= in the URL"},
	} {
		s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: tc.endpoint, Scheme: "http"},
			Options{Env: map[string]string{"AWS_ACCESS_KEY_ID": "w", "AWS_SECRET_ACCESS_KEY": "s"}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Exists(t.Context(), "nix-cache-info")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.endpoint, err, tc.want)
		}
		if cache.IsPermanent(err) {
			t.Errorf("%s: an unreachable server must be retried: %v", tc.endpoint, err)
		}
	}
}

package provision

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cache/s3"
	"github.com/nixpushd/nixpushd/nar"
)

func TestSubstituterURL(t *testing.T) {
	tests := []struct {
		url             string
		public, private string
	}{
		{"s3://nix-cache?endpoint=s3.homelab.local", "https://s3.homelab.local/nix-cache", "s3://nix-cache?endpoint=s3.homelab.local"},
		{"s3://nix-cache?endpoint=127.0.0.1:9000&scheme=http&profile=nixbuilder", "http://127.0.0.1:9000/nix-cache", "s3://nix-cache?endpoint=127.0.0.1:9000&scheme=http"},
		{"s3://nix-cache?endpoint=[::1]:9000&scheme=http", "http://[::1]:9000/nix-cache", "s3://nix-cache?endpoint=[::1]:9000&scheme=http"},
		{"s3://my-cache", "https://my-cache.s3.amazonaws.com", "s3://my-cache"},
		{"s3://my-cache?region=eu-west-1", "https://my-cache.s3.eu-west-1.amazonaws.com", "s3://my-cache?region=eu-west-1"},
		{"s3://cache.example.org?region=eu-west-1", "https://s3.eu-west-1.amazonaws.com/cache.example.org", "s3://cache.example.org?region=eu-west-1"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg, err := s3.ParseURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := SubstituterURL(cfg, true); got != tt.public {
				t.Errorf("public substituter = %q, want %q", got, tt.public)
			}
			if got := SubstituterURL(cfg, false); got != tt.private {
				t.Errorf("private substituter = %q, want %q", got, tt.private)
			}
		})
	}
}

// The default key name is the builder's, not the cache's: two builders
// of one cache get two names.
func TestDefaultKeyName(t *testing.T) {
	for host, want := range map[string]string{
		"builder1":           "builder1-nixpushd-1",
		"ci.example.org":     "ci.example.org-nixpushd-1",
		"odd host:name/x\\y": "oddhostnamexy-nixpushd-1",
		"":                   "localhost-nixpushd-1",
	} {
		got := DefaultKeyName(host)
		if got != want {
			t.Errorf("DefaultKeyName(%q) = %q, want %q", host, got, want)
		}
		if _, err := nar.GenerateSecretKey(got); err != nil {
			t.Errorf("DefaultKeyName(%q) = %q is not a valid key name: %v", host, got, err)
		}
	}
}

func TestSnippets(t *testing.T) {
	got := NixSettings("https://s3.homelab.local/nix-cache", "s3.homelab.local-1:AAAA=")
	want := `nix.settings = {
  extra-substituters = [ "https://s3.homelab.local/nix-cache" ];
  extra-trusted-public-keys = [ "s3.homelab.local-1:AAAA=" ];
};
`
	if got != want {
		t.Errorf("NixSettings:\n%s\nwant:\n%s", got, want)
	}
	svc := ServiceSnippet("s3://nix-cache?endpoint=h", "/etc/nixpushd/aws-credentials", "/etc/nixpushd/secret-key", "")
	for _, s := range []string{`cache.url = "s3://nix-cache?endpoint=h";`, `credentialsFile = "/etc/nixpushd/aws-credentials";`, `secretKeyFile = "/etc/nixpushd/secret-key";`} {
		if !strings.Contains(svc, s) {
			t.Errorf("ServiceSnippet lacks %s:\n%s", s, svc)
		}
	}
	if strings.Contains(svc, "caFile") {
		t.Errorf("ServiceSnippet names a caFile that was not given:\n%s", svc)
	}
	if svc := ServiceSnippet("u", "c", "k", "/etc/ca.pem"); !strings.Contains(svc, `caFile = "/etc/ca.pem";`) {
		t.Errorf("ServiceSnippet lacks the caFile:\n%s", svc)
	}
}

func TestClassifyAdmin(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want adminAnswer
	}{
		{"answered", nil, adminOK},
		{"minio, no such user", madmin.ErrorResponse{Code: "XMinioAdminNoSuchUser"}, adminOK},
		{"minio, not an admin", madmin.ErrorResponse{Code: "AccessDenied"}, adminDenied},
		{"minio, other failure", madmin.ErrorResponse{Code: "XMinioServerNotInitialized"}, adminFailed},
		{"ceph: /minio taken for a bucket", madmin.ErrorResponse{Code: "NoSuchBucket"}, adminNotMinIO},
		{"not implemented", madmin.ErrorResponse{Code: "NotImplemented"}, adminNotMinIO},
		{"unparsed 404 body", madmin.ErrorResponse{Code: "404 Not Found"}, adminNotMinIO},
		{"unparsed 501 body", madmin.ErrorResponse{Code: "501 Not Implemented"}, adminNotMinIO},
		{"network", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, adminFailed},
		{"unknown code", madmin.ErrorResponse{Code: "SlowDown"}, adminFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyAdmin(tt.err); got != tt.want {
				t.Errorf("classifyAdmin = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConnectProblem(t *testing.T) {
	urlErr := func(err error) error { return &url.Error{Op: "Get", URL: "http://h/", Err: err} }
	tests := []struct {
		name string
		err  error
		want string // "" = not recognised
	}{
		{"refused", urlErr(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "connection refused): check endpoint="},
		{"dns", urlErr(&net.DNSError{Err: "no such host", Name: "h"}), "cannot find the S3 server h:9 (DNS: no such host)"},
		{"http server", urlErr(errors.New("http: server gave HTTP response to HTTPS client")), "h:9 speaks plain http, not https: add &scheme=http to the --to URL"},
		{"unknown key", minio.ErrorResponse{Code: "InvalidAccessKeyId"}, `does not know the admin access key "admin" (from AWS_ACCESS_KEY_ID)`},
		{"bad secret", minio.ErrorResponse{Code: "SignatureDoesNotMatch"}, `wrong secret for the admin access key "admin"`},
		{"other S3 error", minio.ErrorResponse{Code: "SlowDown"}, ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := connectProblem(tt.err, s3.Config{Bucket: "b", Endpoint: "h:9", Scheme: "https"}, "", "h:9", "admin", "AWS_ACCESS_KEY_ID")
			if tt.want == "" {
				if p != nil {
					t.Errorf("connectProblem = %v, want nil", p)
				}
				return
			}
			if p == nil || !strings.Contains(p.Error(), tt.want) {
				t.Errorf("connectProblem = %v, want it to contain %q", p, tt.want)
			}
			if p != nil && strings.Contains(p.Error(), "\n") {
				t.Errorf("connectProblem is not one line: %q", p)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	base := func() Config {
		return Config{
			Target:          s3.Config{Bucket: "nix-cache", Endpoint: "h", Scheme: "http"},
			Admin:           Credentials{AccessKey: "root", SecretKey: "s3cret-admin"},
			WriterUser:      "nixbuilder",
			SecretKeyFile:   "/k",
			CredentialsFile: "/c",
		}
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no admin", func(c *Config) { c.Admin = Credentials{} }, "no admin credentials"},
		{"writer named as the admin", func(c *Config) { c.WriterUser, c.WriterUserGiven = "root", true }, `--writer-user "root" is the admin user: the writer must be another, least-privilege user; pick another --writer-user name`},
		{"the writer's keys as admin", func(c *Config) { c.Admin.AccessKey = "nixbuilder" }, "the admin credentials (nixbuilder, from AWS_ACCESS_KEY_ID) are the writer's keys, not an admin's: give init the admin's keys"},
		{"the writer's file's keys as admin", func(c *Config) {
			c.Admin.AccessKey, c.WriterUser, c.ExistingWriter = "nb2", "nixbuilder", &Credentials{AccessKey: "nb2", SecretKey: "x"}
		}, "the admin credentials (nb2, from AWS_ACCESS_KEY_ID) are the writer's keys"},
		{"short writer", func(c *Config) { c.WriterUser = "nb" }, "3 to 128 characters"},
		{"writer with =", func(c *Config) { c.WriterUser = "nix=builder" }, "without '='"},
		{"file of another user", func(c *Config) { c.ExistingWriter = &Credentials{AccessKey: "other", SecretKey: "x"} }, `holds the keys of user "other"`},
		{"file without secret", func(c *Config) { c.ExistingWriter = &Credentials{AccessKey: "nixbuilder"} }, "no AWS_SECRET_ACCESS_KEY"},
		{"bad key name", func(c *Config) { c.KeyName = "s3.homelab.local:1" }, "--key-name"},
		{"file of the writer", func(c *Config) { c.ExistingWriter = &Credentials{AccessKey: "nixbuilder", SecretKey: "x"} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.modify(&cfg)
			err := Validate(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-admin") {
				t.Errorf("Validate's error shows the admin secret: %v", err)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "nixpushd")
	path := filepath.Join(dir, "aws-credentials")
	c := Credentials{AccessKey: "nixbuilder", SecretKey: NewSecret()}
	if err := writeCredentialsFile(path, c, false); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700|os.ModeDir)
	want := "AWS_ACCESS_KEY_ID=nixbuilder\nAWS_SECRET_ACCESS_KEY=" + c.SecretKey + "\n"
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("credentials file = %q, want %q", b, want)
	}
	// Creating never overwrites.
	if err := writeCredentialsFile(path, Credentials{AccessKey: "x", SecretKey: "y"}, false); !errors.Is(err, os.ErrExist) {
		t.Errorf("second create: %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("a failed create changed the file: %q", b)
	}
	// Replacing does, atomically, and keeps 0600.
	c2 := Credentials{AccessKey: "nixbuilder", SecretKey: NewSecret()}
	if err := writeCredentialsFile(path, c2, true); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, 0o600)
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), c2.SecretKey) {
		t.Errorf("replaced file = %q, lacks the new secret", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if len(c.SecretKey) < 20 || c.SecretKey == c2.SecretKey {
		t.Errorf("secrets %q and %q: want long and different", c.SecretKey, c2.SecretKey)
	}
	if s := fmt.Sprint(c) + fmt.Sprintf("%#v", c); strings.Contains(s, c.SecretKey) {
		t.Errorf("Credentials formats its secret: %s", s)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

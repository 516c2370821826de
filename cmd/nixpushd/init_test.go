package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/cache/s3"
	"github.com/nixpushd/nixpushd/provision"
	"github.com/nixpushd/nixpushd/provision/policy"
)

func initTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// init's flags become a provision.Config: admin credentials from each
// source, existing writer credentials, absolute paths; mistakes are one
// line naming the flag.
func TestInitConfig(t *testing.T) {
	dir := t.TempDir()
	adminFile := initTestFile(t, dir, "admin.env", "export AWS_ACCESS_KEY_ID=root\nAWS_SECRET_ACCESS_KEY='s3cret'\n")
	minioFile := initTestFile(t, dir, "minio", "# /etc/default/minio\nMINIO_ROOT_USER=minioadmin\nMINIO_ROOT_PASSWORD=minio-secret\nMINIO_VOLUMES=/data\n")
	emptyFile := initTestFile(t, dir, "empty.env", "# nothing\n")
	awsFile := initTestFile(t, dir, "aws-credentials-ini", "[default]\naws_access_key_id=dflt\naws_secret_access_key=x\n[minio-admin]\naws_access_key_id=fromprofile\naws_secret_access_key=profile-secret\n")
	writerFile := initTestFile(t, dir, "writer", "AWS_ACCESS_KEY_ID=nixbuilder\nAWS_SECRET_ACCESS_KEY=w-secret\n")
	noKeyFile := initTestFile(t, dir, "nokey", "AWS_SECRET_ACCESS_KEY=w-secret\n")
	badFile := initTestFile(t, dir, "bad", "this is not an env file\n")
	env := map[string]string{
		"AWS_ACCESS_KEY_ID": "envkey", "AWS_SECRET_ACCESS_KEY": "env-secret",
		"AWS_SHARED_CREDENTIALS_FILE": awsFile,
	}
	noEnv := map[string]string{}
	const to = "s3://nix-cache?endpoint=s3.homelab.local:9000&profile=nixbuilder"

	tests := []struct {
		name  string
		o     initOptions
		env   map[string]string
		check func(t *testing.T, c provision.Config)
		err   string // a substring; "" = no error
		usage bool   // the error is a usage error (exit 2)
	}{
		{name: "admin from the environment", o: initOptions{to: to}, env: env, check: func(t *testing.T, c provision.Config) {
			if c.Admin.AccessKey != "envkey" || c.Admin.SecretKey != "env-secret" || c.AdminSource != "AWS_ACCESS_KEY_ID" {
				t.Errorf("admin %#v from %q", c.Admin, c.AdminSource)
			}
			if c.Target.Bucket != "nix-cache" || c.Target.Endpoint != "s3.homelab.local:9000" || c.KeyName != keyName() || !strings.HasSuffix(c.KeyName, "-nixpushd-1") {
				t.Errorf("target %+v, key name %q", c.Target, c.KeyName)
			}
			if !filepath.IsAbs(c.SecretKeyFile) || !filepath.IsAbs(c.CredentialsFile) {
				t.Errorf("paths %q, %q are not absolute", c.SecretKeyFile, c.CredentialsFile)
			}
			if c.ExistingWriter != nil {
				t.Errorf("an existing writer file was found: %#v", c.ExistingWriter)
			}
		}},
		{name: "admin credentials file", o: initOptions{to: to, adminCredentialsFile: adminFile}, env: env, check: func(t *testing.T, c provision.Config) {
			if c.Admin.AccessKey != "root" || c.Admin.SecretKey != "s3cret" || !strings.Contains(c.AdminSource, adminFile) {
				t.Errorf("admin %#v from %q", c.Admin, c.AdminSource)
			}
		}},
		{name: "minio's own env file", o: initOptions{to: to, adminCredentialsFile: minioFile}, env: noEnv, check: func(t *testing.T, c provision.Config) {
			if c.Admin.AccessKey != "minioadmin" || c.Admin.SecretKey != "minio-secret" {
				t.Errorf("admin %#v", c.Admin)
			}
		}},
		{name: "admin profile", o: initOptions{to: to, adminProfile: "minio-admin"}, env: env, check: func(t *testing.T, c provision.Config) {
			if c.Admin.AccessKey != "fromprofile" || c.Admin.SecretKey != "profile-secret" || !strings.Contains(c.AdminSource, "minio-admin") {
				t.Errorf("admin %#v from %q", c.Admin, c.AdminSource)
			}
		}},
		{name: "existing writer file", o: initOptions{to: to, credentialsFile: writerFile, keyName: "mine-2"}, env: env, check: func(t *testing.T, c provision.Config) {
			if c.ExistingWriter == nil || c.ExistingWriter.AccessKey != "nixbuilder" || c.ExistingWriter.SecretKey != "w-secret" {
				t.Errorf("existing writer %#v", c.ExistingWriter)
			}
			if c.CredentialsFile != writerFile || c.KeyName != "mine-2" {
				t.Errorf("credentials file %q, key name %q", c.CredentialsFile, c.KeyName)
			}
		}},
		{name: "no --to", o: initOptions{}, env: env, err: "--to s3://BUCKET?endpoint=HOST:PORT is required", usage: true},
		{name: "file url", o: initOptions{to: "file:///var/cache"}, env: env, err: "a file:// cache needs no setup", usage: true},
		{name: "bad url", o: initOptions{to: "s3://nix-cache?compression=xz"}, env: env, err: "nix copy setting", usage: true},
		{name: "both admin flags", o: initOptions{to: to, adminProfile: "p", adminCredentialsFile: adminFile}, env: env, err: "either --admin-profile or --admin-credentials-file", usage: true},
		{name: "no admin at all", o: initOptions{to: to}, env: noEnv, err: "no admin credentials", usage: true},
		{name: "admin file without keys", o: initOptions{to: to, adminCredentialsFile: emptyFile}, env: env, err: "want AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY= lines"},
		{name: "admin file missing", o: initOptions{to: to, adminCredentialsFile: filepath.Join(dir, "nope")}, env: env, err: "--admin-credentials-file"},
		{name: "unknown profile", o: initOptions{to: to, adminProfile: "nope"}, env: env, err: "no aws_access_key_id/aws_secret_access_key under [nope]"},
		{name: "bad writer name", o: initOptions{to: to, writerUser: "a b"}, env: env, err: "--writer-user", usage: true},
		{name: "writer file without key id", o: initOptions{to: to, credentialsFile: noKeyFile}, env: env, err: "has no AWS_ACCESS_KEY_ID= line"},
		{name: "writer file unparsable", o: initOptions{to: to, credentialsFile: badFile}, env: env, err: "line 1: want KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			if o.writerUser == "" {
				o.writerUser = "nixbuilder"
			}
			if o.secretKeyFile == "" {
				o.secretKeyFile = "relative/secret-key"
			}
			if o.credentialsFile == "" {
				o.credentialsFile = filepath.Join(dir, "absent", "aws-credentials")
			}
			c, err := o.config(func(k string) string { return tt.env[k] })
			if tt.err == "" {
				if err != nil {
					t.Fatalf("config: %v", err)
				}
				tt.check(t, c)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("config error %v, want %q", err, tt.err)
			}
			var u usageError
			if errors.As(err, &u) != tt.usage {
				t.Errorf("usage error: %v, want %v", errors.As(err, &u), tt.usage)
			}
			for _, secret := range []string{"s3cret", "env-secret", "w-secret", "profile-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestInitHints(t *testing.T) {
	cfg := provision.Config{
		Target:          initMustS3(t, "s3://nix-cache?endpoint=s3.homelab.local"),
		WriterUser:      "nixbuilder",
		SecretKeyFile:   "/etc/nixpushd/secret-key",
		CredentialsFile: "/etc/nixpushd/aws-credentials",
	}
	const pub = "s3.homelab.local-1:m0J/oDlLEuG6ezc6MzmpLCN2MYjssO3NMIlr9JdxkTs="
	tests := []struct {
		name          string
		public        bool
		caFile        string
		manual        []byte
		want, notWant []string
	}{
		{name: "public", public: true, want: []string{
			`extra-substituters = [ "https://s3.homelab.local/nix-cache" ];`,
			`extra-trusted-public-keys = [ "` + pub + `" ];`,
			`cache.url = "s3://nix-cache?endpoint=s3.homelab.local";`,
			"nixpushd push --to 's3://nix-cache?endpoint=s3.homelab.local' --credentials-file /etc/nixpushd/aws-credentials --secret-key-file /etc/nixpushd/secret-key /run/current-system",
		}, notWant: []string{"not public", "caFile", "no MinIO admin API"}},
		{name: "private", want: []string{`extra-substituters = [ "s3://nix-cache?endpoint=s3.homelab.local" ];`, "The bucket is not public"}},
		{name: "ca file", public: true, caFile: "/etc/ca dir/ca.pem", want: []string{`caFile = "/etc/ca dir/ca.pem";`, "--ca-file '/etc/ca dir/ca.pem' /run"}},
		{name: "manual policy", public: true, manual: policy.Identity("nix-cache"), want: []string{"no MinIO admin API", `"arn:aws:s3:::nix-cache/*"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.CAFile = tt.caFile
			got := hints(c, &provision.Result{PublicKey: pub, ManualPolicy: tt.manual, Public: tt.public})
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("hints lack %s:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("hints contain %s:\n%s", w, got)
				}
			}
		})
	}
}

func initMustS3(t *testing.T, s string) s3.Config {
	t.Helper()
	c, err := s3.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFormatStepAndQuote(t *testing.T) {
	steps := []struct {
		s    provision.Step
		want string
	}{
		{provision.Step{Name: "bucket nix-cache", Status: provision.StatusCreated}, "  bucket nix-cache                     created"},
		{provision.Step{Name: "nix-cache-info", Status: provision.StatusKept, Detail: "differs"}, "  nix-cache-info                       kept: differs"},
	}
	for _, tt := range steps {
		if got := formatStep(tt.s); got != tt.want {
			t.Errorf("formatStep = %q, want %q", got, tt.want)
		}
	}
	quotes := map[string]string{
		"/etc/nixpushd/secret-key":        "/etc/nixpushd/secret-key",
		"s3://b?endpoint=h:9&scheme=http": "'s3://b?endpoint=h:9&scheme=http'",
		"it's":                            `'it'\''s'`,
		"":                                "''",
	}
	for in, want := range quotes {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

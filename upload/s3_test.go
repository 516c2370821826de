package upload

import (
	"strings"
	"testing"
)

func TestParseS3URL(t *testing.T) {
	good := []struct {
		in   string
		want S3Config
	}{
		{"s3://nix-cache", S3Config{Bucket: "nix-cache", Scheme: "https"}},
		{"s3://nix-cache?profile=nixbuilder&endpoint=s3.homelab.local", S3Config{Bucket: "nix-cache", Scheme: "https", Endpoint: "s3.homelab.local", Profile: "nixbuilder"}},
		{"s3://bkt?endpoint=127.0.0.1:9000&region=eu-west-1&scheme=http", S3Config{Bucket: "bkt", Scheme: "http", Endpoint: "127.0.0.1:9000", Region: "eu-west-1"}},
		{"s3://bkt?endpoint=http://127.0.0.1:9000/", S3Config{Bucket: "bkt", Scheme: "http", Endpoint: "127.0.0.1:9000"}},
	}
	for _, tt := range good {
		got, err := ParseS3URL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseS3URL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	bad := map[string]string{
		"s3://":                       "bucket",
		"s3://bkt/prefix":             "no path",
		"s3://bkt?scheme=ftp":         "scheme",
		"s3://bkt?compression=xz":     "--compression",
		"s3://bkt?secret-key=/k":      "--secret-key-file",
		"s3://bkt?endpoint=ftp://h":   "endpoint scheme",
		"s3://bkt?bogus=1":            "unknown parameter",
		"s3://bkt?endpoint=host/path": "HOST:PORT",
		"http://b":                    "s3://",
		"s3://b":                      "bucket",
		"s3://Bad_Bucket":             "bucket",
	}
	for in, want := range bad {
		_, err := ParseS3URL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseS3URL(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestPartSize(t *testing.T) {
	for _, size := range []int64{0, 1, 16 << 20, 1 << 30, 5 << 30, 6 << 30, 100 << 30, 4 << 40} {
		ps := int64(PartSize(size))
		if ps < 16<<20 || ps%(1<<20) != 0 {
			t.Errorf("PartSize(%d) = %d: below 16 MiB or not whole MiB", size, ps)
		}
		if parts := (size + ps - 1) / ps; parts > 10000 {
			t.Errorf("PartSize(%d) = %d gives %d parts, over S3's 10,000", size, ps, parts)
		}
	}
}

func TestResolveCredentials(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/credentials"
	writeFile(t, file, "[nixbuilder]\naws_access_key_id=fileuser\naws_secret_access_key=filesecret\n")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_ACCESS_KEY_ID", "envuser")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_PROFILE", "")

	c, err := resolveCredentials("nixbuilder", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetWithContext(nil); v.AccessKeyID != "fileuser" {
		t.Errorf("with profile: got %q, want the profile's key", v.AccessKeyID)
	}
	c, err = resolveCredentials("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetWithContext(nil); v.AccessKeyID != "envuser" {
		t.Errorf("without profile: got %q, want the environment's key", v.AccessKeyID)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err = resolveCredentials("missing", nil)
	if err == nil || !strings.Contains(err.Error(), "[missing]") {
		t.Errorf("missing profile: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "filesecret") {
		t.Error("error leaks a secret")
	}
}

func FuzzParseS3URL(f *testing.F) {
	f.Add("s3://nix-cache?endpoint=127.0.0.1:9000&region=us-east-1&scheme=http&profile=p")
	f.Add("s3://b")
	f.Add("s3://bucket?endpoint=http://h:1/")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseS3URL(s)
		if err != nil {
			return
		}
		// Whatever parses renders to a URL that parses to the same config.
		again, err := ParseS3URL(cfg.String())
		if err != nil || again != cfg {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, cfg, cfg.String(), again, err)
		}
	})
}

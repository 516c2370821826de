package s3

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Config is what an s3:// cache URL says, in the shape Nix's own
// `nix copy --to s3://BUCKET?endpoint=…&profile=…` uses.
type Config struct {
	Bucket   string
	Endpoint string // host[:port]; empty = AWS
	Region   string
	Scheme   string // "https" (default) or "http"
	Profile  string // section of ~/.aws/credentials
	// SchemeGiven: the URL said the scheme (scheme= or endpoint=SCHEME://),
	// so a hint changes it rather than adding one.
	SchemeGiven bool
}

// ParseURL parses s3://BUCKET?endpoint=HOST:PORT&region=R&scheme=http|https&profile=P.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("cache URL %q: %w", raw, err)
	}
	if u.Scheme != "s3" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return Config{}, fmt.Errorf("cache URL %q: want s3://BUCKET?endpoint=HOST:PORT (the bucket is the host part, with no path)", raw)
	}
	cfg := Config{Bucket: u.Host, Scheme: "https"}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return Config{}, fmt.Errorf("cache URL %q: bucket %q: %w", raw, cfg.Bucket, err)
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "scheme":
			if v != "http" && v != "https" {
				return Config{}, fmt.Errorf("cache URL %q: scheme=%q, want http or https", raw, v)
			}
			cfg.Scheme, cfg.SchemeGiven = v, true
		case "profile":
			cfg.Profile = v
		case "compression", "secret-key", "parallel-compression", "write-nar-listing", "ls-compression", "narinfo-compression":
			return Config{}, fmt.Errorf("cache URL %q: %s= is a nix copy setting; use nixpushd's own flags (--compression, --secret-key-file)", raw, k)
		default:
			return Config{}, fmt.Errorf("cache URL %q: unknown parameter %q (known: endpoint, region, scheme, profile)", raw, k)
		}
	}
	// Accept endpoint=http://host:port as well, as some guides write it.
	if scheme, host, ok := strings.Cut(cfg.Endpoint, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return Config{}, fmt.Errorf("cache URL %q: endpoint scheme %q, want http or https", raw, scheme)
		}
		cfg.Scheme, cfg.Endpoint, cfg.SchemeGiven = scheme, strings.TrimSuffix(host, "/"), true
	}
	if strings.ContainsAny(cfg.Endpoint, "/?#") {
		return Config{}, fmt.Errorf("cache URL %q: endpoint %q must be HOST or HOST:PORT", raw, cfg.Endpoint)
	}
	return cfg, nil
}

func (c Config) String() string {
	// Written by hand: url.Values would escape the ':' in HOST:PORT.
	var q []string
	for _, kv := range [][2]string{{"endpoint", c.Endpoint}, {"region", c.Region}, {"profile", c.Profile}} {
		if kv[1] != "" {
			q = append(q, kv[0]+"="+kv[1])
		}
	}
	if c.Scheme != "https" {
		q = append(q, "scheme="+c.Scheme)
	}
	if len(q) == 0 {
		return "s3://" + c.Bucket
	}
	return "s3://" + c.Bucket + "?" + strings.Join(q, "&")
}

// Options say how to reach a bucket, beyond its URL.
type Options struct {
	// CAFile is a PEM file of certificates trusted for an https
	// endpoint, in addition to the system roots.
	CAFile string
	// Env holds variables (AWS_ACCESS_KEY_ID, …) read from a credentials
	// file. They are consulted before the process environment and never
	// exported to it, so child processes do not inherit secrets.
	Env map[string]string
	// EnvFile names the file Env was read from, for messages that say
	// where the credentials came from.
	EnvFile string
	// ReadEnvFile reads EnvFile again (as Env was read). When set, the
	// keys from Env are re-read whenever the file changes, so a fixed
	// file takes effect without a restart.
	ReadEnvFile func(path string) (map[string]string, error)
	// MinPartSize is the smallest part of a multipart upload, at least
	// S3's 5 MiB; 0 means 16 MiB. Tests lower it to exercise multipart
	// uploads with small NARs.
	MinPartSize int64
	// Anonymous lets a read-only command go on without credentials when
	// none resolve: requests are sent unsigned, as a public cache's
	// clients send them. Only commands that write nothing set it.
	Anonymous bool
}

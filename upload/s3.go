package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3Config is what an s3:// cache URL says, in the shape Nix's own
// `nix copy --to s3://BUCKET?endpoint=…&profile=…` uses.
type S3Config struct {
	Bucket   string
	Endpoint string // host[:port]; empty = AWS
	Region   string
	Scheme   string // "https" (default) or "http"
	Profile  string // section of ~/.aws/credentials
}

// ParseS3URL parses s3://BUCKET?endpoint=HOST:PORT&region=R&scheme=http|https&profile=P.
func ParseS3URL(raw string) (S3Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return S3Config{}, fmt.Errorf("cache URL %q: %w", raw, err)
	}
	if u.Scheme != "s3" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return S3Config{}, fmt.Errorf("cache URL %q: want s3://BUCKET?endpoint=HOST:PORT (the bucket is the host part, with no path)", raw)
	}
	cfg := S3Config{Bucket: u.Host, Scheme: "https"}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return S3Config{}, fmt.Errorf("cache URL %q: bucket %q: %w", raw, cfg.Bucket, err)
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
				return S3Config{}, fmt.Errorf("cache URL %q: scheme=%q, want http or https", raw, v)
			}
			cfg.Scheme = v
		case "profile":
			cfg.Profile = v
		case "compression", "secret-key", "parallel-compression", "write-nar-listing", "ls-compression", "narinfo-compression":
			return S3Config{}, fmt.Errorf("cache URL %q: %s= is a nix copy setting; use nixpushd's own flags (--compression, --secret-key-file)", raw, k)
		default:
			return S3Config{}, fmt.Errorf("cache URL %q: unknown parameter %q (known: endpoint, region, scheme, profile)", raw, k)
		}
	}
	// Accept endpoint=http://host:port as well, as some guides write it.
	if scheme, host, ok := strings.Cut(cfg.Endpoint, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return S3Config{}, fmt.Errorf("cache URL %q: endpoint scheme %q, want http or https", raw, scheme)
		}
		cfg.Scheme, cfg.Endpoint = scheme, strings.TrimSuffix(host, "/")
	}
	if strings.ContainsAny(cfg.Endpoint, "/?#") {
		return S3Config{}, fmt.Errorf("cache URL %q: endpoint %q must be HOST or HOST:PORT", raw, cfg.Endpoint)
	}
	return cfg, nil
}

func (c S3Config) String() string {
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

// S3 is a binary cache in an S3 bucket.
type S3 struct {
	cfg    S3Config
	client *minio.Client
	// big uploads multipart objects; it retries a failed part on its own
	// (client does not retry: our RetryPolicy does, with our own backoff).
	big *minio.Client
}

// resolveCredentials looks where Nix (the AWS SDK) looks: with a profile,
// that section of the shared credentials file first; otherwise the
// environment, then the file's default profile. It never uses instance
// metadata: a cache writer should have explicit credentials.
func resolveCredentials(profile string, env map[string]string) (*credentials.Credentials, error) {
	if id, secret := env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]; id != "" && secret != "" {
		return credentials.NewStaticV4(id, secret, env["AWS_SESSION_TOKEN"]), nil
	}
	file := &credentials.FileAWSCredentials{Filename: credentialsFile(), Profile: profile}
	var providers []credentials.Provider
	if profile != "" {
		providers = []credentials.Provider{file, &credentials.EnvAWS{}}
	} else {
		providers = []credentials.Provider{&credentials.EnvAWS{}, file}
	}
	for _, p := range providers {
		v, err := p.RetrieveWithCredContext(nil) // nil: no network (no SSO, no IMDS)
		if err == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
			return credentials.NewStaticV4(v.AccessKeyID, v.SecretAccessKey, v.SessionToken), nil
		}
	}
	where := "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	if profile != "" {
		return nil, fmt.Errorf("no S3 credentials: profile [%s] not found in %s and %s not set (add aws_access_key_id/aws_secret_access_key under [%s])", profile, credentialsFile(), where, profile)
	}
	return nil, fmt.Errorf("no S3 credentials: set %s, or add a [default] section to %s, or use ?profile=NAME", where, credentialsFile())
}

func credentialsFile() string {
	if f := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		return f
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".aws", "credentials")
}

// NewS3 connects to the bucket. It does not touch the network; the first
// request reports a wrong endpoint or bucket.
func NewS3(_ context.Context, cfg S3Config, o Options) (*S3, error) {
	creds, err := resolveCredentials(cfg.Profile, o.Env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg, err)
	}
	endpoint := cfg.Endpoint
	lookup := minio.BucketLookupPath // MinIO, Ceph, Garage: path-style always works
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
		lookup = minio.BucketLookupAuto
	}
	region := cfg.Region
	if region == "" && cfg.Endpoint != "" {
		region = "us-east-1" // what Nix assumes; avoids a GetBucketLocation round trip
	}
	opts := func(retries int) *minio.Options {
		return &minio.Options{
			Creds:        creds,
			Secure:       cfg.Scheme == "https",
			Region:       region,
			BucketLookup: lookup,
			MaxRetries:   retries,
		}
	}
	client, err := minio.New(endpoint, opts(1)) // we retry ourselves, with our own backoff and classification
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg, err)
	}
	big, err := minio.New(endpoint, opts(partRetries))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg, err)
	}
	return &S3{cfg: cfg, client: client, big: big}, nil
}

func (s *S3) String() string { return s.cfg.String() }

func (s *S3) Exists(ctx context.Context, key string) (bool, error) {
	_, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	if minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
		if code := minio.ToErrorResponse(err).Code; code == "NoSuchBucket" {
			return false, s.wrap("check", key, err)
		}
		return false, nil
	}
	return false, s.wrap("check", key, err)
}

func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
		}
		return nil, s.wrap("get", key, err)
	}
	return b, nil
}

// partRetries is how often one failed part of a multipart upload is sent
// again before the whole object fails: a flaky link costs a part, not
// the object.
const partRetries = 6

// minPartSize is 16 MiB; NIXPUSHD_PART_SIZE (bytes, at least S3's 5 MiB)
// lowers it for tests of multipart uploads with smaller NARs.
var minPartSize = func() int64 {
	if v, err := strconv.ParseInt(os.Getenv("NIXPUSHD_PART_SIZE"), 10, 64); err == nil && v >= 5<<20 {
		return v
	}
	return 16 << 20
}()

// PartSize picks a multipart part size for an object of size bytes: 16 MiB,
// grown so that even the largest NAR stays under S3's 10,000-part limit.
func PartSize(size int64) uint64 {
	const mib = 1 << 20
	p := (size + 9000 - 1) / 9000 // leave headroom under 10,000
	p = (p + mib - 1) / mib * mib
	return uint64(max(p, minPartSize))
}

func (s *S3) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	partSize := PartSize(size)
	multipart := size < 0 || uint64(size) > partSize
	client := s.client
	if multipart {
		client = s.big
	}
	_, err := client.PutObject(ctx, s.cfg.Bucket, key, body, size, minio.PutObjectOptions{
		ContentType: contentType,
		PartSize:    partSize,
		NumThreads:  2,
	})
	if err != nil {
		if multipart {
			// minio-go aborts with the caller's context, which may be
			// cancelled by now: abort again with a fresh one, so that no
			// orphan parts stay billed in the bucket.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if aerr := s.big.RemoveIncompleteUpload(actx, s.cfg.Bucket, key); aerr != nil {
				slog.Debug("aborting an interrupted multipart upload", "key", key, "err", aerr)
			}
			cancel()
		}
		return s.wrap("put", key, err)
	}
	return nil
}

// wrap names the object and, for the mistakes people make while setting a
// cache up, says what to fix.
func (s *S3) wrap(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	where := fmt.Sprintf("%s s3://%s/%s", op, s.cfg.Bucket, key)
	if s.cfg.Endpoint != "" {
		where += " at " + s.cfg.Scheme + "://" + s.cfg.Endpoint
	}
	resp := minio.ToErrorResponse(err)
	var hint string
	switch resp.Code {
	case "AccessDenied":
		hint = "the credentials lack permission; the writer policy needs s3:GetObject, s3:PutObject and s3:ListBucket on the bucket"
	case "NoSuchBucket":
		hint = "the bucket does not exist; create it (mc mb ALIAS/" + s.cfg.Bucket + ")"
	case "InvalidAccessKeyId", "SignatureDoesNotMatch":
		hint = "the access key or secret is wrong; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile in " + credentialsFile()
	}
	if hint != "" {
		return &PermanentError{Err: fmt.Errorf("%s: %w (%s)", where, err, hint), Config: true}
	}
	return fmt.Errorf("%s: %w", where, err)
}

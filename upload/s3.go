package upload

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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
	// credSource says where the credentials came from, for hints.
	credSource string
	creds      *credentials.Credentials
	refreshes  bool // creds are role sessions that renew themselves
	caFile     string

	httpc    *http.Client // listings through presigned URLs (listv2.go)
	slowList atomic.Bool  // the server refused them: use minio-go's
	// Object requests of our own (objects.go), and whether the server
	// refused them.
	objBase     atomic.Pointer[objBase]
	slowObjects atomic.Bool
	pageSize    int // keys per listing page; 1000, less in tests
}

// Instance-metadata lookups are variables for tests. The probe is
// bounded: off EC2/ECS, 169.254.169.254 may swallow packets, and a
// machine without credentials must hear so at once, not after minutes.
var (
	imdsEndpoint     = "" // minio-go's default (169.254.169.254, or the ECS/EKS variables)
	imdsProbeTimeout = time.Second
	imdsTimeout      = 5 * time.Second // each later refresh
)

// primed is a provider whose first Retrieve returns the value already
// fetched while probing the chain, so that finding the credentials does
// not fetch them twice; later ones (after expiry) ask the provider again.
type primed struct {
	credentials.Provider
	first *credentials.Value
}

func (p *primed) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	if p.first != nil { // Credentials serialises calls: no lock needed
		v := *p.first
		p.first = nil
		return v, nil
	}
	return p.Provider.RetrieveWithCredContext(cc)
}

func (p *primed) Retrieve() (credentials.Value, error) { return p.RetrieveWithCredContext(nil) }

// resolveCredentials finds the credentials the way operators expect, and
// says where it found them:
//  1. --credentials-file (o.Env), never exported to the process;
//  2. with ?profile=P, section [P] of the shared credentials file, then
//     the environment; without, the environment, then [$AWS_PROFILE or
//     default] of that file (as Nix's AWS SDK does);
//  3. an EC2 instance role or ECS/EKS task role, refreshed before its
//     session token expires (skipped with AWS_EC2_METADATA_DISABLED=true
//     unless a container variable asks for it).
//
// Errors never echo credential values.
func resolveCredentials(ctx context.Context, profile string, o Options) (*credentials.Credentials, string, error) {
	getenv := func(k string) string {
		if v, ok := o.Env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	envFile := "--credentials-file"
	if o.EnvFile != "" {
		envFile += " " + o.EnvFile
	}
	if id, secret := o.Env["AWS_ACCESS_KEY_ID"], o.Env["AWS_SECRET_ACCESS_KEY"]; id != "" || secret != "" {
		if id == "" || secret == "" {
			return nil, "", fmt.Errorf("%s sets only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; set both", envFile)
		}
		return credentials.NewStaticV4(id, secret, o.Env["AWS_SESSION_TOKEN"]), envFile, nil
	}

	fromEnv := func() (*credentials.Credentials, string) {
		id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return nil, ""
		}
		return credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN")), "environment (AWS_ACCESS_KEY_ID)"
	}
	file := credentialsFile(getenv)
	section := profile
	if section == "" {
		section = cmp.Or(getenv("AWS_PROFILE"), "default")
	}
	fromFile := func() (*credentials.Credentials, string) {
		p := &credentials.FileAWSCredentials{Filename: file, Profile: section}
		// A profile may run credential_process or use SSO: let those
		// refresh, and bound nothing but what the caller bounds.
		v, err := p.RetrieveWithCredContext(&credentials.CredContext{Client: http.DefaultClient, Context: ctx})
		if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
			return nil, ""
		}
		return credentials.New(&primed{Provider: p, first: &v}), fmt.Sprintf("%s [%s]", file, section)
	}
	order := []func() (*credentials.Credentials, string){fromEnv, fromFile}
	if profile != "" {
		order = []func() (*credentials.Credentials, string){fromFile, fromEnv}
	}
	for _, f := range order {
		if c, src := f(); c != nil {
			return c, src, nil
		}
	}
	if c, src := fromRole(ctx, getenv); c != nil {
		return c, src, nil
	}

	where := "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	if profile != "" {
		return nil, "", fmt.Errorf("no S3 credentials: profile [%s] not found in %s and %s not set (add aws_access_key_id/aws_secret_access_key under [%s])", profile, file, where, profile)
	}
	inFile := ""
	if o.Env != nil {
		inFile = fmt.Sprintf(" (%s has no AWS_ACCESS_KEY_ID)", envFile)
	}
	return nil, "", fmt.Errorf("no S3 credentials: give --credentials-file FILE%s, set %s, add a [%s] section to %s, or use ?profile=NAME; no instance role answered either", inFile, where, section, file)
}

// Where role credentials come from; all three renew their sessions.
const (
	srcIMDS        = "instance role (IMDS)"
	srcECS         = "container role (ECS)"
	srcWebIdentity = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
)

// fromRole asks the instance metadata service (or the ECS/EKS credential
// endpoint the environment names) for role credentials, within
// imdsProbeTimeout. The credentials it returns refresh themselves.
func fromRole(ctx context.Context, getenv func(string) string) (*credentials.Credentials, string) {
	src := srcIMDS
	switch {
	case os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		src = srcWebIdentity
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "" || os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		src = srcECS
	default:
		if off, _ := strconv.ParseBool(getenv("AWS_EC2_METADATA_DISABLED")); off {
			return nil, ""
		}
	}
	iam := &credentials.IAM{Client: probeClient(imdsTimeout), Endpoint: imdsEndpoint}
	pctx, cancel := context.WithTimeout(ctx, imdsProbeTimeout)
	defer cancel()
	v, err := iam.RetrieveWithCredContext(&credentials.CredContext{Client: iam.Client, Context: pctx})
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		slog.Debug("no role credentials", "from", src, "err", err)
		return nil, ""
	}
	return credentials.New(&primed{Provider: iam, first: &v}), src
}

// probeClient is the HTTP client for metadata credential lookups:
// link-local, so never through a proxy, and bounded.
func probeClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: timeout}).DialContext,
		},
	}
}

// credentialsFile is the AWS shared credentials file.
func credentialsFile(getenv func(string) string) string {
	if f := getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		return f
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".aws", "credentials")
}

// NewS3 connects to the bucket. It does not touch the network, except to
// ask for instance-role credentials when nothing else provides any; the
// first request reports a wrong endpoint, certificate or bucket.
func NewS3(ctx context.Context, cfg S3Config, o Options) (*S3, error) {
	creds, source, err := resolveCredentials(ctx, cfg.Profile, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg, err)
	}
	secure := cfg.Scheme == "https"
	if o.CAFile != "" && !secure {
		slog.Warn("--ca-file is ignored: the cache URL says scheme=http", "target", cfg.String(), "ca_file", o.CAFile)
	}
	transport, err := HTTPTransport(o.CAFile)
	if err != nil {
		return nil, &PermanentError{Err: fmt.Errorf("%s: %w", cfg, err), Config: true}
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
			Secure:       secure,
			Transport:    transport,
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
	slog.Debug("S3 credentials", "target", cfg.String(), "from", source)
	return &S3{cfg: cfg, client: client, big: big, credSource: source, creds: creds,
		refreshes: source == srcIMDS || source == srcECS || source == srcWebIdentity, caFile: o.CAFile,
		httpc: &http.Client{Transport: transport}, pageSize: 1000}, nil
}

// CredentialSource says where the credentials came from, e.g.
// "--credentials-file /run/credentials/nixpushd.service/s3",
// "environment (AWS_ACCESS_KEY_ID)", "/root/.aws/credentials [nixbuilder]"
// or "instance role (IMDS)".
func (s *S3) CredentialSource() string { return s.credSource }

func (s *S3) String() string { return s.cfg.String() }

func (s *S3) Exists(ctx context.Context, key string) (bool, error) {
	r, asked, err := s.object(ctx, http.MethodHead, key, nil, "")
	if err != nil {
		return false, s.wrap("check", key, err)
	}
	if asked {
		switch {
		case r.status == http.StatusOK:
			return true, nil
		case r.status == http.StatusNotFound && r.errorCode() != "NoSuchBucket":
			return false, nil
		}
	}
	_, err = s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	s.settle(r, asked, err)
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
	r, asked, err := s.object(ctx, http.MethodGet, key, nil, "")
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	if asked {
		switch {
		case r.status == http.StatusOK:
			return r.body, nil
		case r.status == http.StatusNotFound && r.errorCode() == "NoSuchKey":
			return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
		}
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, maxObjBody))
	s.settle(r, asked, err)
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
	opts := minio.PutObjectOptions{
		ContentType: contentType,
		PartSize:    partSize,
		NumThreads:  2,
	}
	if !multipart {
		// Over plain http minio-go would sign the body in chunks, which
		// costs more client (and server) CPU than a small object's whole
		// request. The payload goes unsigned, as over https, with a
		// Content-MD5 the server checks. Nix checks the NAR against the
		// signed narinfo anyway.
		opts.DisableContentSha256 = true
		opts.SendContentMd5 = true
		if size <= smallNAR {
			return s.putSmall(ctx, key, body, size, opts)
		}
	}
	_, err := client.PutObject(ctx, s.cfg.Bucket, key, body, size, opts)
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

// putSmall puts a body of at most smallNAR bytes, read into memory once:
// through our own request, or minio-go's when that is not answered with
// success.
func (s *S3) putSmall(ctx context.Context, key string, body io.Reader, size int64, opts minio.PutObjectOptions) error {
	buf := make([]byte, size)
	if _, err := io.ReadFull(body, buf); err != nil {
		return fmt.Errorf("put %s: read the body: %w", key, err)
	}
	r, asked, err := s.object(ctx, http.MethodPut, key, buf, opts.ContentType)
	if err != nil {
		return s.wrap("put", key, err)
	}
	if asked && r.status == http.StatusOK {
		return nil
	}
	// Seen as a plain reader, the body is hashed and sent from one
	// buffer; as a ReaderAt it would go through 32 KiB copy buffers,
	// zeroed for every request.
	_, err = s.client.PutObject(ctx, s.cfg.Bucket, key, struct{ io.Reader }{bytes.NewReader(buf)}, size, opts)
	s.settle(r, asked, err)
	if err != nil {
		return s.wrap("put", key, err)
	}
	return nil
}

// wrap names the object and, for the mistakes people make while setting a
// cache up, says what to fix. Those mistakes concern the whole target, so
// they are permanent configuration errors: retrying the same request
// cannot help, and the daemon reports itself degraded until fixed.
func (s *S3) wrap(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	where := fmt.Sprintf("%s s3://%s/%s", op, s.cfg.Bucket, key)
	if s.cfg.Endpoint != "" {
		where += " at " + s.cfg.Scheme + "://" + s.cfg.Endpoint
	}
	if hint, ok := ConnectionHint(err, s.cfg, s.caFile); ok {
		// The hint says it all; the request URL in err would only repeat
		// where, so keep the innermost cause.
		return &PermanentError{Err: fmt.Errorf("%s: %s", where, hint), Config: true}
	}
	resp := minio.ToErrorResponse(err)
	var hint string
	switch resp.Code {
	case "AccessDenied":
		// S3 answers AccessDenied, not NoSuchBucket, to a user whose
		// policy does not cover a bucket, whether the bucket exists or not.
		hint = fmt.Sprintf("bucket %q does not exist or the credentials from %s lack permission on it; S3 cannot tell these apart for a user without rights on the bucket: "+
			"check the bucket name in the URL, and that the writer policy grants s3:GetObject, s3:PutObject and s3:ListBucket on arn:aws:s3:::%s and arn:aws:s3:::%s/*",
			s.cfg.Bucket, s.credSource, s.cfg.Bucket, s.cfg.Bucket)
	case "NoSuchBucket":
		hint = fmt.Sprintf("bucket %q does not exist; check its name in the URL, or create it (mc mb ALIAS/%s, or nixpushd init)", s.cfg.Bucket, s.cfg.Bucket)
	case "InvalidAccessKeyId":
		hint = "the access key or secret is wrong: the server does not know the access key from " + s.credSource
	case "SignatureDoesNotMatch":
		hint = "the access key or secret is wrong: the secret does not match the access key from " + s.credSource
	case "ExpiredToken", "InvalidToken":
		if s.refreshes {
			// A role session that lapsed (a suspended machine): fetch a
			// new one for the next try instead of giving up.
			s.creds.Expire()
			return fmt.Errorf("%s: %w (renewing the session from %s)", where, err, s.credSource)
		}
		hint = "the session token from " + s.credSource + " has expired or is invalid; renew it"
	}
	if hint != "" {
		return &PermanentError{Err: fmt.Errorf("%s: %w (%s)", where, err, hint), Config: true}
	}
	// A server that is down or restarting may come back: retried, but
	// the message says where to look if it does not.
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w (nothing listens there: check endpoint= in the URL and that the S3 server is running)", where, err)
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Errorf("%s: %w (unknown host: check endpoint= in the URL)", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

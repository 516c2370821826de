package provision

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/s3"
	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/provision/policy"
)

// Config is what to set up.
type Config struct {
	Target s3.Config   // the bucket and server; Profile is ignored
	Admin  Credentials // may create buckets, users and policies
	// AdminSource says where Admin came from ("AWS_ACCESS_KEY_ID", "--admin-profile P", …),
	// for error messages.
	AdminSource string
	CAFile      string // PEM CAs for an https endpoint, besides the system roots

	Public     bool   // set anonymous download
	Force      bool   // replace a nix-cache-info or policy that differs from ours
	WriterUser string // the writer's access key ("nixbuilder")
	// WriterUserGiven: WriterUser was asked for (--writer-user), not the
	// default; an admin of that name is then a name clash, not the
	// writer's keys given as the admin's.
	WriterUserGiven bool
	PolicyName      string // the writer's policy ("BUCKET-write" when empty)
	// NewWriterSecret gives an existing writer user a new secret.
	NewWriterSecret bool
	// CreateBucket lets init create a bucket that does not exist. Without
	// it, ConfirmCreateBucket is asked (nil: no), so that a typo in --to
	// stops init instead of making a new bucket.
	CreateBucket        bool
	ConfirmCreateBucket func(bucket, host string) bool

	KeyName         string // signing key name, used only when creating the key
	SecretKeyFile   string
	CredentialsFile string
	// ExistingWriter is what CredentialsFile holds, nil when it does not
	// exist. The caller reads it (with the parser push uses).
	ExistingWriter *Credentials

	// OnStep is called as each step finishes (nil: not called).
	OnStep func(Step)
	Log    *slog.Logger // debug details; nil discards
}

// Step statuses.
const (
	StatusExists  = "ok (exists)"
	StatusCreated = "created"
	StatusUpdated = "updated"
	StatusKept    = "kept"
	StatusSkipped = "skipped"
	StatusManual  = "to do by hand"
)

// Step is one thing init looked at, with what it did.
type Step struct {
	Name   string // "bucket nix-cache"
	Status string // one of the Status constants
	Detail string // optional, one line
}

// Changed reports whether the step changed something on the server or on
// disk.
func (s Step) Changed() bool { return s.Status == StatusCreated || s.Status == StatusUpdated }

// Result is what Run did and what clients need to know.
type Result struct {
	Steps     []Step
	MinIO     bool
	Public    bool   // anyone may download: clients read the bucket over HTTP(S)
	PublicKey string // "name:base64", as `nix key convert-secret-to-public` prints
	// ManualPolicy is the writer policy to apply by hand on a server whose
	// admin API is not MinIO's (nil on MinIO).
	ManualPolicy []byte
}

// Changed counts the steps that changed something.
func (r *Result) Changed() int {
	n := 0
	for _, s := range r.Steps {
		if s.Changed() {
			n++
		}
	}
	return n
}

type runner struct {
	cfg    Config
	host   string // endpoint, for messages
	s3     *minio.Client
	tr     *http.Transport
	res    *Result
	log    *slog.Logger
	policy string
}

// Run performs every step, in order, stopping at the first problem.
// Errors are *Problem (one line for the operator) or wrap one.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, res: &Result{}, log: cfg.Log, policy: cfg.PolicyName}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if r.policy == "" {
		r.policy = DefaultPolicyName(cfg.Target.Bucket)
	}
	if err := r.connect(ctx); err != nil {
		return r.res, err
	}
	defer r.tr.CloseIdleConnections()
	// Before the admin API: a bucket of another account is the more
	// useful thing to report.
	exists, err := r.bucketExists(ctx)
	if err != nil {
		return r.res, err
	}
	adm, err := r.detectMinIO(ctx)
	if err != nil {
		return r.res, err
	}
	r.res.MinIO = adm != nil
	if err := r.bucket(ctx, exists); err != nil {
		return r.res, err
	}
	for _, step := range []func(context.Context) error{
		r.cacheInfo,
		r.anonymous,
		r.signingKey,
	} {
		if err := step(ctx); err != nil {
			return r.res, err
		}
	}
	if adm != nil {
		err = r.minioWriter(ctx, adm)
	} else {
		err = r.manualWriter(ctx)
	}
	return r.res, err
}

// Validate checks the configuration without touching the network.
func Validate(cfg Config) error {
	if cfg.Target.Bucket == "" {
		return problemf("no bucket: --to s3://BUCKET?endpoint=HOST:PORT")
	}
	if cfg.Admin.AccessKey == "" || cfg.Admin.SecretKey == "" {
		return problemf("no admin credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --admin-profile or --admin-credentials-file")
	}
	if err := ValidUserName(cfg.WriterUser); err != nil {
		return err
	}
	if cfg.WriterUser == cfg.Admin.AccessKey && cfg.WriterUserGiven {
		return problemf("--writer-user %q is the admin user: the writer must be another, least-privilege user; pick another --writer-user name", cfg.WriterUser)
	}
	if cfg.WriterUser == cfg.Admin.AccessKey || cfg.ExistingWriter != nil && cfg.ExistingWriter.AccessKey == cfg.Admin.AccessKey {
		// Usually the writer's keys given as the admin's: naming another
		// writer would not help.
		return problemf("the admin credentials (%s, from %s) are the writer's keys, not an admin's: give init the admin's keys (on MinIO, the root user: MINIO_ROOT_USER and MINIO_ROOT_PASSWORD as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --admin-credentials-file /etc/default/minio)",
			cfg.Admin.AccessKey, cmp.Or(cfg.AdminSource, "AWS_ACCESS_KEY_ID"))
	}
	if cfg.KeyName != "" {
		// Checked now, not when the key is made after the server steps.
		if _, err := nar.GenerateSecretKey(cfg.KeyName); err != nil {
			return problemf("--key-name: %s", nar.ErrorReason(err))
		}
	}
	if cfg.SecretKeyFile == "" || cfg.CredentialsFile == "" {
		return problemf("--secret-key-file and --credentials-file must name files")
	}
	if cfg.ExistingWriter != nil && cfg.ExistingWriter.AccessKey != cfg.WriterUser {
		return problemf("%s holds the keys of user %q, not of the writer user %q: pass --writer-user %s, or another --credentials-file",
			cfg.CredentialsFile, cfg.ExistingWriter.AccessKey, cfg.WriterUser, cfg.ExistingWriter.AccessKey)
	}
	if cfg.NewWriterSecret && cfg.ExistingWriter != nil && !cfg.Force {
		// Its secret may be the only copy another machine's file matches.
		return problemf("--new-writer-secret would overwrite %s (the keys of %s): add --force to replace that file, or pass another --credentials-file",
			cfg.CredentialsFile, cfg.ExistingWriter.AccessKey)
	}
	if cfg.ExistingWriter != nil && cfg.ExistingWriter.SecretKey == "" {
		return problemf("%s has AWS_ACCESS_KEY_ID but no AWS_SECRET_ACCESS_KEY: complete it, or remove it and re-run with --new-writer-secret", cfg.CredentialsFile)
	}
	return nil
}

// ValidUserName checks a writer user name as MinIO does (3 to 128
// characters, none of '=' ',' or spaces) and as a credentials file can
// hold it.
func ValidUserName(name string) error {
	if len(name) < 3 || len(name) > 128 || strings.ContainsAny(name, "=, \t\r\n#\"'") {
		return problemf("--writer-user %q: use 3 to 128 characters without '=', ',', quotes or spaces (e.g. nixbuilder)", name)
	}
	return nil
}

// DefaultPolicyName is the writer policy's name for a bucket:
// "nix-cache-write" for the guides' bucket nix-cache.
func DefaultPolicyName(bucket string) string { return bucket + "-write" }

func (r *runner) step(s Step) {
	r.res.Steps = append(r.res.Steps, s)
	if r.cfg.OnStep != nil {
		r.cfg.OnStep(s)
	}
}

// connect makes the admin S3 client and checks, with one request, that
// the endpoint answers and knows the admin credentials.
func (r *runner) connect(ctx context.Context) error {
	t := r.cfg.Target
	tr, err := s3.HTTPTransport(r.cfg.CAFile)
	if err != nil {
		return problemf("%v", err)
	}
	r.tr = tr
	endpoint, lookup := t.Endpoint, minio.BucketLookupPath
	if endpoint == "" {
		endpoint, lookup = "s3.amazonaws.com", minio.BucketLookupAuto
	}
	r.host = endpoint
	r.s3, err = minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(r.cfg.Admin.AccessKey, r.cfg.Admin.SecretKey, r.cfg.Admin.SessionToken),
		Secure:       t.Scheme != "http",
		Region:       r.region(),
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   1, // a wrong endpoint must fail now, not after ten backoffs
	})
	if err != nil {
		return problemf("S3 endpoint %q: %v", endpoint, err)
	}
	octx, cancel := opContext(ctx)
	defer cancel()
	_, err = r.s3.ListBuckets(octx)
	if p := connectProblem(err, r.cfg.Target, r.cfg.CAFile, r.host, r.cfg.Admin.AccessKey, r.cfg.AdminSource); p != nil {
		return p
	}
	// AccessDenied here is an account that may not list every bucket;
	// the bucket step finds out whether it may use this one.
	if err != nil && minio.ToErrorResponse(err).Code != "AccessDenied" {
		return s3Problem("connecting", r.host, err)
	}
	return nil
}

// region is what requests are signed for: the URL's, else us-east-1 for
// a custom endpoint (as Nix assumes), else found by minio-go on AWS.
func (r *runner) region() string {
	if r.cfg.Target.Region != "" || r.cfg.Target.Endpoint == "" {
		return r.cfg.Target.Region
	}
	return "us-east-1"
}

// bucketExists checks the bucket is ours to use, if it exists.
func (r *runner) bucketExists(ctx context.Context) (bool, error) {
	b := r.cfg.Target.Bucket
	octx, cancel := opContext(ctx)
	defer cancel()
	ok, err := r.s3.BucketExists(octx, b)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "AccessDenied" {
			return false, problemf("the admin credentials (%s, from %s) may not use bucket %s (another account's bucket, or a user without rights on it): pick another bucket name in --to, or use its owner's credentials (on MinIO, the root user)",
				r.cfg.Admin.AccessKey, r.cfg.AdminSource, b)
		}
		return false, s3Problem("checking bucket "+b, r.host, err)
	}
	return ok, nil
}

func (r *runner) bucket(ctx context.Context, exists bool) error {
	b := r.cfg.Target.Bucket
	name := "bucket " + b
	if exists {
		r.step(Step{Name: name, Status: StatusExists})
		return nil
	}
	if !r.cfg.CreateBucket && (r.cfg.ConfirmCreateBucket == nil || !r.cfg.ConfirmCreateBucket(b, r.host)) {
		return problemf("bucket %s does not exist on %s: check the bucket name in --to, or add --create-bucket to create it", b, r.host)
	}
	octx, cancel := opContext(ctx)
	defer cancel()
	region := r.region()
	if region == "" {
		region = "us-east-1"
	}
	err := r.s3.MakeBucket(octx, b, minio.MakeBucketOptions{Region: region})
	switch minio.ToErrorResponse(err).Code {
	case "":
		if err != nil {
			return s3Problem("creating bucket "+b, r.host, err)
		}
	case "BucketAlreadyOwnedByYou":
		r.step(Step{Name: name, Status: StatusExists})
		return nil
	case "BucketAlreadyExists":
		return problemf("bucket name %s is taken by another account (bucket names are global on AWS): pick another bucket name in --to", b)
	default:
		return s3Problem("creating bucket "+b, r.host, err)
	}
	r.step(Step{Name: name, Status: StatusCreated})
	return nil
}

func (r *runner) cacheInfo(ctx context.Context) error {
	const key = "nix-cache-info"
	b := r.cfg.Target.Bucket
	octx, cancel := opContext(ctx)
	defer cancel()
	existing, err := r.target().get(octx, key)
	if err != nil {
		return s3Problem("reading "+key, r.host, err)
	}
	status := StatusCreated
	switch {
	case existing == nil:
	case bytes.Equal(existing, []byte(cache.CacheInfo)):
		r.step(Step{Name: key, Status: StatusExists})
		return nil
	case !r.cfg.Force:
		r.step(Step{Name: key, Status: StatusKept, Detail: fmt.Sprintf("differs from the guides' (%s); --force replaces it", oneLine(existing))})
		return nil
	default:
		status = StatusUpdated
	}
	_, err = r.s3.PutObject(octx, b, key, strings.NewReader(cache.CacheInfo), int64(len(cache.CacheInfo)),
		minio.PutObjectOptions{ContentType: cache.TypeCacheInfo})
	if err != nil {
		return s3Problem("writing "+key, r.host, err)
	}
	r.step(Step{Name: key, Status: status})
	return nil
}

// target is the bucket through the admin's client.
func (r *runner) target() adminTarget {
	return adminTarget{s3: r.s3, bucket: r.cfg.Target.Bucket, url: CacheURL(r.cfg.Target)}
}

func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func (r *runner) anonymous(ctx context.Context) error {
	const name = "anonymous download"
	b := r.cfg.Target.Bucket
	want := policy.Download(b)
	octx, cancel := opContext(ctx)
	defer cancel()
	have, err := r.s3.GetBucketPolicy(octx, b)
	if !r.cfg.Public {
		// Not asked for; but a bucket made public before is read over
		// HTTP by clients, and the snippets must say so.
		if err == nil && policy.Same([]byte(have), want, true) {
			r.res.Public = true
			r.step(Step{Name: name, Status: StatusExists, Detail: "the bucket was already public"})
			return nil
		}
		r.step(Step{Name: name, Status: StatusSkipped, Detail: "no --public: clients need S3 credentials to read"})
		return nil
	}
	if err != nil {
		return s3Problem("reading the policy of bucket "+b, r.host, err)
	}
	r.res.Public = true
	status := StatusCreated
	switch {
	case have == "":
	case policy.Same([]byte(have), want, true):
		r.step(Step{Name: name, Status: StatusExists})
		return nil
	case !r.cfg.Force:
		r.step(Step{Name: name, Status: StatusKept, Detail: "the bucket has another anonymous policy; --force replaces it with download only"})
		return nil
	default:
		status = StatusUpdated
	}
	if err := r.s3.SetBucketPolicy(octx, b, string(want)); err != nil {
		if r.cfg.Target.Endpoint == "" && minio.ToErrorResponse(err).Code == "AccessDenied" {
			return problemf("AWS refused the public policy on %s: Block Public Access is on by default; turn it off for this bucket, or run init without --public", b)
		}
		return s3Problem("setting anonymous download on "+b, r.host, err)
	}
	r.step(Step{Name: name, Status: status})
	return nil
}

// keyStepName is the step that records the key in the cache.
const keyStepName = "key in the cache"

// recordKey records pk in the cache (cachekeys), as a step.
func (r *runner) recordKey(ctx context.Context, pk *nar.PublicKey, fix string) error {
	recorded, err := writeKeyRecord(ctx, r.target(), r.host, pk, fix)
	if err != nil {
		return err
	}
	st := Step{Name: keyStepName, Status: StatusExists, Detail: cachekeys.ObjectKey(pk.Name)}
	if recorded {
		st.Status = StatusCreated
	}
	r.step(st)
	return nil
}

func (r *runner) signingKey(ctx context.Context) error {
	path := r.cfg.SecretKeyFile
	const name = "signing key"
	st, err := os.Stat(path)
	if err == nil {
		key, err := nar.LoadSecretKeyFile(path)
		if err != nil {
			return problemf("%s: fix or remove it (init never replaces a signing key that clients may trust)", nar.ErrorReason(err))
		}
		fix := fmt.Sprintf("reuse that key (copy its secret key to %s) or move %s away and pick a new name with --key-name", path, path)
		if err := checkKeyRecord(ctx, r.target(), r.host, key.Public(), fix); err != nil {
			return err
		}
		r.res.PublicKey = key.Public().String()
		notes := []string{path + " (" + key.Name + ")"}
		if r.cfg.KeyName != "" && key.Name != r.cfg.KeyName {
			notes = append(notes, fmt.Sprintf("named %s, not %s (kept)", key.Name, r.cfg.KeyName))
		}
		if st.Mode().Perm()&0o077 != 0 {
			notes = append(notes, fmt.Sprintf("mode %04o lets others read it: chmod 600 %s", st.Mode().Perm(), path))
		}
		r.step(Step{Name: name, Status: StatusExists, Detail: strings.Join(notes, "; ")})
		return r.recordKey(ctx, key.Public(), fix)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return problemf("signing key: %v", err)
	}
	key, err := nar.GenerateSecretKey(r.cfg.KeyName)
	var ke *nar.KeyError
	if errors.As(err, &ke) {
		return problemf("--key-name: %s", ke.Reason())
	} else if err != nil {
		return problemf("signing key: %v", err)
	}
	// Asked before the key is written: a refused name leaves no file.
	if err := checkKeyRecord(ctx, r.target(), r.host, key.Public(), ""); err != nil {
		return err
	}
	if err := ensureDir(path); err != nil {
		return problemf("writing the signing key: %v", err)
	}
	if err := nar.WriteSecretKeyFile(path, key); err != nil {
		return problemf("writing the signing key: %v", err)
	}
	r.res.PublicKey = key.Public().String()
	r.step(Step{Name: name, Status: StatusCreated, Detail: path + " (" + key.Name + ")"})
	return r.recordKey(ctx, key.Public(), fmt.Sprintf("reuse that key (copy its secret key to %s) or move %s away and pick a new name with --key-name", path, path))
}

// detectMinIO returns an admin client when the server is MinIO (its admin
// API answers), nil when it is another S3 server.
func (r *runner) detectMinIO(ctx context.Context) (*madmin.AdminClient, error) {
	t := r.cfg.Target
	if t.Endpoint == "" {
		return nil, nil // AWS
	}
	adm, err := madmin.NewWithOptions(t.Endpoint, &madmin.Options{
		Creds:     credentials.NewStaticV4(r.cfg.Admin.AccessKey, r.cfg.Admin.SecretKey, r.cfg.Admin.SessionToken),
		Secure:    t.Scheme != "http",
		Transport: r.tr,
	})
	if err != nil {
		return nil, problemf("admin API of %s: %v", t.Endpoint, err)
	}
	octx, cancel := opContext(ctx)
	defer cancel()
	_, err = adm.GetUserInfo(octx, r.cfg.WriterUser)
	switch classifyAdmin(err) {
	case adminOK:
		return adm, nil
	case adminNotMinIO:
		r.log.Debug("not MinIO: its admin API answered", "error", err)
		return nil, nil
	case adminDenied:
		if r.isMinIO(ctx) {
			return nil, problemf("the admin credentials (%s, from %s) may not manage users on this MinIO: use the root user (MINIO_ROOT_USER) or a user with the consoleAdmin policy", r.cfg.Admin.AccessKey, r.cfg.AdminSource)
		}
		return nil, nil
	}
	return nil, s3Problem("asking the MinIO admin API", r.host, err)
}

type adminAnswer int

const (
	adminOK adminAnswer = iota
	adminNotMinIO
	adminDenied
	adminFailed
)

// classifyAdmin sorts the answer to a MinIO admin request. MinIO's own
// errors are XMinio*; other S3 servers take /minio/admin/… for a bucket
// named "minio", or do not implement it.
func classifyAdmin(err error) adminAnswer {
	if err == nil {
		return adminOK
	}
	code := madmin.ToErrorResponse(err).Code
	switch {
	case code == "XMinioAdminNoSuchUser":
		return adminOK
	case code == "AccessDenied":
		return adminDenied
	case code == "":
		return adminFailed // network, not an answer
	case strings.HasPrefix(code, "XMinio"):
		return adminFailed
	case slices.Contains([]string{"NoSuchBucket", "NoSuchKey", "NotImplemented", "MethodNotAllowed",
		"InvalidRequest", "InvalidArgument", "InvalidBucketName", "InvalidURI", "NotFound", "UnsupportedOperation"}, code),
		len(code) >= 3 && code[0] >= '4' && code[0] <= '5' && code[1] >= '0' && code[1] <= '9': // "404 Not Found": body was not an S3 error
		return adminNotMinIO
	}
	return adminFailed
}

// isMinIO asks MinIO's unauthenticated liveness endpoint, which other
// servers do not have.
func (r *runner) isMinIO(ctx context.Context) bool {
	octx, cancel := opContext(ctx)
	defer cancel()
	scheme := "https"
	if r.cfg.Target.Scheme == "http" {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(octx, http.MethodGet, scheme+"://"+r.cfg.Target.Endpoint+"/minio/health/live", nil)
	if err != nil {
		return false
	}
	resp, err := (&http.Client{Transport: r.tr}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && strings.Contains(resp.Header.Get("Server"), "MinIO")
}

// minioWriter creates the writer's policy and user, writes its
// credentials file and attaches the policy.
func (r *runner) minioWriter(ctx context.Context, adm *madmin.AdminClient) error {
	if err := r.writerPolicy(ctx, adm); err != nil {
		return err
	}
	if err := r.writerUser(ctx, adm); err != nil {
		return err
	}
	return r.attach(ctx, adm)
}

func (r *runner) writerPolicy(ctx context.Context, adm *madmin.AdminClient) error {
	name := "policy " + r.policy
	want := policy.Writer(r.cfg.Target.Bucket, r.cfg.WriterUser)
	octx, cancel := opContext(ctx)
	defer cancel()
	info, err := adm.InfoCannedPolicyV2(octx, r.policy)
	status := StatusCreated
	switch {
	case madmin.ToErrorResponse(err).Code == "XMinioAdminNoSuchPolicy":
	case err != nil:
		return s3Problem("reading policy "+r.policy, r.host, err)
	case policy.Same(info.Policy, want, false):
		r.step(Step{Name: name, Status: StatusExists})
		return nil
	case !r.cfg.Force:
		r.step(Step{Name: name, Status: StatusKept, Detail: "differs from the guides' writer policy; --force replaces it"})
		return nil
	default:
		status = StatusUpdated
	}
	if err := adm.AddCannedPolicy(octx, r.policy, want); err != nil {
		return s3Problem("creating policy "+r.policy, r.host, err)
	}
	r.step(Step{Name: name, Status: status})
	return nil
}

func (r *runner) writerUser(ctx context.Context, adm *madmin.AdminClient) error {
	user, file := r.cfg.WriterUser, r.cfg.CredentialsFile
	name := "writer user " + user
	octx, cancel := opContext(ctx)
	defer cancel()
	_, err := adm.GetUserInfo(octx, user)
	exists := err == nil
	if err != nil && madmin.ToErrorResponse(err).Code != "XMinioAdminNoSuchUser" {
		return s3Problem("looking up user "+user, r.host, err)
	}
	have := r.cfg.ExistingWriter
	switch {
	case exists && !r.cfg.NewWriterSecret && have == nil:
		return problemf("writer user %s exists but %s does not: copy that file from the machine where init created it, or re-run with --new-writer-secret (machines using the old secret then need the new file)", user, file)
	case exists && !r.cfg.NewWriterSecret:
		if err := r.checkWriter(ctx, *have); err != nil {
			return err
		}
		r.step(Step{Name: name, Status: StatusExists, Detail: "its keys in " + file + " work"})
		return nil
	case !exists && have != nil && !r.cfg.NewWriterSecret:
		// A previous run wrote the file but did not get to create the
		// user: keep the secret the file already holds.
		if err := adm.AddUser(octx, user, have.SecretKey); err != nil {
			return s3Problem("creating user "+user, r.host, err)
		}
		r.step(Step{Name: name, Status: StatusCreated, Detail: "with the secret already in " + file})
		return nil
	}
	// A new secret: on disk first, so that it is never only on the server.
	secret := NewSecret()
	if err := writeCredentialsFile(file, Credentials{AccessKey: user, SecretKey: secret}, have != nil); err != nil {
		return problemf("writing the writer's credentials: %v", err)
	}
	if err := adm.AddUser(octx, user, secret); err != nil {
		return s3Problem("setting the secret of user "+user, r.host, err)
	}
	status := StatusCreated
	if exists {
		status = StatusUpdated
	}
	r.step(Step{Name: name, Status: status, Detail: "new secret written to " + file})
	return nil
}

// checkWriter makes one request as the writer: the secret in its
// credentials file must be the one the server has.
func (r *runner) checkWriter(ctx context.Context, c Credentials) error {
	t := r.cfg.Target
	endpoint, lookup := t.Endpoint, minio.BucketLookupPath
	if endpoint == "" {
		endpoint, lookup = "s3.amazonaws.com", minio.BucketLookupAuto
	}
	cl, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKey, c.SecretKey, c.SessionToken),
		Secure:       t.Scheme != "http",
		Region:       r.region(),
		BucketLookup: lookup,
		Transport:    r.tr,
		MaxRetries:   1,
	})
	if err != nil {
		return problemf("S3 endpoint %q: %v", endpoint, err)
	}
	octx, cancel := opContext(ctx)
	defer cancel()
	// Stop after the first page: this is a credentials check.
	for obj := range cl.ListObjects(octx, t.Bucket, minio.ListObjectsOptions{MaxKeys: 1}) {
		err = obj.Err
		break
	}
	cancel()
	switch minio.ToErrorResponse(err).Code {
	case "":
		if err != nil {
			return s3Problem("checking the writer's keys", r.host, err)
		}
		return nil
	case "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return problemf("the server rejects the keys of %s in %s (wrong secret): fix the file, or re-run with --new-writer-secret", c.AccessKey, r.cfg.CredentialsFile)
	case "AccessDenied":
		return problemf("user %s (keys in %s) may not list bucket %s: attach the writer policy %s to it", c.AccessKey, r.cfg.CredentialsFile, t.Bucket, r.policy)
	}
	return s3Problem("checking the writer's keys", r.host, err)
}

func (r *runner) attach(ctx context.Context, adm *madmin.AdminClient) error {
	user := r.cfg.WriterUser
	name := "policy attached to " + user
	octx, cancel := opContext(ctx)
	defer cancel()
	info, err := adm.GetUserInfo(octx, user)
	if err != nil {
		return s3Problem("looking up user "+user, r.host, err)
	}
	var others []string
	attached := false
	for p := range strings.SplitSeq(info.PolicyName, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case r.policy:
			attached = true
		default:
			others = append(others, p)
		}
	}
	detail := ""
	if len(others) > 0 {
		detail = "also attached: " + strings.Join(others, ", ") + " (more than a writer needs)"
	}
	if attached {
		r.step(Step{Name: name, Status: StatusExists, Detail: detail})
		return nil
	}
	_, err = adm.AttachPolicy(octx, madmin.PolicyAssociationReq{Policies: []string{r.policy}, User: user})
	if err != nil {
		return s3Problem("attaching policy "+r.policy+" to "+user, r.host, err)
	}
	r.step(Step{Name: name, Status: StatusCreated, Detail: detail})
	return nil
}

// manualWriter is the writer step on a server without MinIO's admin API:
// the policy is printed to apply by hand; existing keys are checked.
func (r *runner) manualWriter(ctx context.Context) error {
	r.res.ManualPolicy = policy.Identity(r.cfg.Target.Bucket)
	r.step(Step{Name: "writer policy", Status: StatusManual, Detail: "not MinIO: apply the policy printed below to the writer user"})
	name := "writer user " + r.cfg.WriterUser
	if have := r.cfg.ExistingWriter; have != nil {
		if err := r.checkWriter(ctx, *have); err != nil {
			return err
		}
		r.step(Step{Name: name, Status: StatusExists, Detail: "its keys in " + r.cfg.CredentialsFile + " work"})
		return nil
	}
	r.step(Step{Name: name, Status: StatusManual,
		Detail: fmt.Sprintf("create it with that policy, then put its keys in %s (AWS_ACCESS_KEY_ID=…, AWS_SECRET_ACCESS_KEY=…, mode 0600) and re-run", r.cfg.CredentialsFile)})
	return nil
}

// NewSecret returns a random secret key for the writer user: 26
// characters, 128 bits.
func NewSecret() string { return rand.Text() }

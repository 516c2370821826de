package s3

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nixpushd/nixpushd/cache"
)

// Bucket is a binary cache in an S3 bucket.
type Bucket struct {
	explainer // cfg and where the credentials came from, for errors
	client    *minio.Client
	// big uploads multipart objects; it retries a failed part on its own
	// (client does not retry: package retry does, with our own backoff).
	big *minio.Client
	// direct sends the per-path requests without minio-go (direct.go).
	direct  *direct
	minPart int64 // smallest multipart part
}

// What a Bucket can do beyond Target.
var (
	_ cache.Target     = (*Bucket)(nil)
	_ cache.Lister     = (*Bucket)(nil)
	_ cache.RootLister = (*Bucket)(nil)
	_ cache.Opener     = (*Bucket)(nil)
	_ cache.Deleter    = (*Bucket)(nil)
)

// New connects to the bucket. It does not touch the network, except to
// ask for instance-role credentials when nothing else provides any; the
// first request reports a wrong endpoint, certificate or bucket.
func New(ctx context.Context, cfg Config, o Options) (*Bucket, error) {
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
		return nil, &cache.PermanentError{Err: fmt.Errorf("%s: %w", cfg, err), Config: true}
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
	b := &Bucket{
		explainer: explainer{cfg: cfg, credSource: source, creds: creds, caFile: o.CAFile,
			refreshes: source == srcIMDS || source == srcECS || source == srcWebIdentity},
		client: client, big: big,
		direct:  &direct{httpc: &http.Client{Transport: transport}, client: client, bucket: cfg.Bucket, creds: creds, pageSize: 1000},
		minPart: cmp.Or(o.MinPartSize, defaultMinPart),
	}
	if source == SourceAnonymous {
		// Our own requests are signed ones (and minio-go presigns no
		// anonymous URL): leave every request to minio-go.
		b.direct.off.Store(true)
	}
	return b, nil
}

// CredentialSource says where the credentials came from, e.g.
// "--credentials-file /run/credentials/nixpushd.service/s3",
// "environment (AWS_ACCESS_KEY_ID)", "/root/.aws/credentials [nixbuilder]"
// or "instance role (IMDS)".
func (s *Bucket) CredentialSource() string { return s.credSource }

func (s *Bucket) String() string { return s.cfg.String() }

func (s *Bucket) Exists(ctx context.Context, key string) (bool, error) {
	r, asked, err := s.direct.object(ctx, http.MethodHead, key, nil, "")
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
	s.direct.settle(r, asked, err)
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

func (s *Bucket) Get(ctx context.Context, key string) ([]byte, error) {
	r, asked, err := s.direct.object(ctx, http.MethodGet, key, nil, "")
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	if asked {
		switch {
		case r.status == http.StatusOK && len(r.body) < maxObjBody:
			return r.body, nil
		case r.status == http.StatusNotFound && r.errorCode() == "NoSuchKey":
			return nil, fmt.Errorf("get %s: %w", key, cache.ErrNotFound)
		}
		// An answer of maxObjBody bytes may have been cut short: read
		// the object whole through minio-go.
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	s.direct.settle(r, asked, err)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("get %s: %w", key, cache.ErrNotFound)
		}
		return nil, s.wrap("get", key, err)
	}
	return b, nil
}

// partRetries is how often one failed part of a multipart upload is sent
// again before the whole object fails: a flaky link costs a part, not
// the object.
const partRetries = 6

// defaultMinPart is the smallest multipart part: 16 MiB.
const defaultMinPart = 16 << 20

// smallObject is the largest object sent from memory in one request of our
// own (direct.go) rather than streamed through minio-go.
const smallObject = 1 << 20

// PartSize picks a multipart part size for an object of size bytes: at
// least minPart, grown so that even the largest NAR stays under S3's
// 10,000-part limit.
func PartSize(size, minPart int64) uint64 {
	const mib = 1 << 20
	p := (size + 9000 - 1) / 9000 // leave headroom under 10,000
	p = (p + mib - 1) / mib * mib
	return uint64(max(p, minPart))
}

func (s *Bucket) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	partSize := PartSize(size, s.minPart)
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
		if size <= smallObject {
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

// putSmall puts a body of at most smallObject bytes, read into memory once:
// through our own request, or minio-go's when that is not answered with
// success.
func (s *Bucket) putSmall(ctx context.Context, key string, body io.Reader, size int64, opts minio.PutObjectOptions) error {
	buf := make([]byte, size)
	if _, err := io.ReadFull(body, buf); err != nil {
		return fmt.Errorf("put %s: read the body: %w", key, err)
	}
	r, asked, err := s.direct.object(ctx, http.MethodPut, key, buf, opts.ContentType)
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
	s.direct.settle(r, asked, err)
	if err != nil {
		return s.wrap("put", key, err)
	}
	return nil
}

func (s *Bucket) List(ctx context.Context, prefix string, fn func(cache.ObjectInfo) error) error {
	return s.list(ctx, prefix, true, fn)
}

func (s *Bucket) ListRoot(ctx context.Context, fn func(cache.ObjectInfo) error) error {
	return s.list(ctx, "", false, fn)
}

// list lists through our own requests when the server takes them, else
// through minio-go. Objects whose key ends in "/" (directory markers) are
// left out.
func (s *Bucket) list(ctx context.Context, prefix string, recursive bool, fn func(cache.ObjectInfo) error) error {
	wrap := func(err error) error { return s.wrap("list", prefix+"*", err) }
	ran, refused, err := s.direct.list(ctx, prefix, recursive, fn, wrap)
	if ran {
		return err
	}
	for obj := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive}) {
		if obj.Err != nil {
			return wrap(obj.Err)
		}
		if strings.HasSuffix(obj.Key, "/") {
			continue // a "directory": nar/, locks/, pins/
		}
		if err := fn(cache.ObjectInfo{Key: obj.Key, Size: obj.Size, LastModified: obj.LastModified, ETag: strings.Trim(obj.ETag, `"`)}); err != nil {
			return err
		}
	}
	if refused && ctx.Err() == nil {
		// Only our way of asking was refused: keep to minio-go's.
		s.direct.stepAside("listing")
	}
	return ctx.Err()
}

func (s *Bucket) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	// GetObject is lazy: Stat makes the request, so a missing key fails here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("get %s: %w", key, cache.ErrNotFound)
		}
		return nil, s.wrap("get", key, err)
	}
	return obj, nil
}

func (s *Bucket) Delete(ctx context.Context, keys []string) error {
	ch := make(chan minio.ObjectInfo)
	go func() {
		defer close(ch)
		for _, k := range keys {
			select {
			case ch <- minio.ObjectInfo{Key: k}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var errs []error
	for r := range s.client.RemoveObjectsWithResult(ctx, s.cfg.Bucket, ch, minio.RemoveObjectsOptions{}) {
		if r.Err != nil && minio.ToErrorResponse(r.Err).Code != "NoSuchKey" {
			errs = append(errs, s.wrapDelete(r.ObjectName, r.Err))
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errs[0] // the rest say the same; one line is enough
	}
	return nil
}

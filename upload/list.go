package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// ObjectInfo describes one object of a listing.
type ObjectInfo struct {
	Key          string
	Size         int64
	LastModified time.Time // the server's clock, not ours
}

// Lister is a Target that can list its objects: gc, verify and the locks
// need it; the writer's policy (s3:ListBucket) allows it.
type Lister interface {
	// List calls fn for every object whose key starts with prefix, in
	// key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// RootLister lists only the objects at the top of the cache (narinfos and
// nix-cache-info), not nar/ and the rest: one request per thousand
// narinfos answers "which of these paths are cached?" for a whole closure.
type RootLister interface {
	ListRoot(ctx context.Context, fn func(ObjectInfo) error) error
}

// Barrierer is a Target whose writes reach the disk later, in batches:
// Barrier returns once everything written before it is durable. The
// Pusher calls it before publishing a narinfo, so that no narinfo can
// survive a power cut that its NAR or references did not.
type Barrierer interface {
	Barrier(ctx context.Context) error
}

// Opener is a Target that can stream a large object (verify --full).
type Opener interface {
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// Deleter is a Target that can delete objects. Only gc (and a stale lock's
// clean-up) deletes: the writer's policy has no s3:DeleteObject.
type Deleter interface {
	// Delete removes keys; a key that is already gone is not an error.
	Delete(ctx context.Context, keys []string) error
}

// ErrNotFound is returned (wrapped) by Get and Open for a missing object.
var ErrNotFound = errors.New("object not found")

func (s *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return s.list(ctx, prefix, true, fn)
}

func (s *S3) ListRoot(ctx context.Context, fn func(ObjectInfo) error) error {
	return s.list(ctx, "", false, fn)
}

// list lists through listFast when the server allows it, else through
// minio-go. Objects whose key ends in "/" (directory markers) are left out.
func (s *S3) list(ctx context.Context, prefix string, recursive bool, fn func(ObjectInfo) error) error {
	fast := !s.slowList.Load()
	if ran, err := s.listFast(ctx, prefix, recursive, fn); ran {
		return err
	}
	for obj := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: recursive}) {
		if obj.Err != nil {
			return s.wrap("list", prefix+"*", obj.Err)
		}
		if strings.HasSuffix(obj.Key, "/") {
			continue // a "directory": nar/, locks/, pins/
		}
		if err := fn(ObjectInfo{Key: obj.Key, Size: obj.Size, LastModified: obj.LastModified}); err != nil {
			return err
		}
	}
	if fast && ctx.Err() == nil {
		// Only the presigned way was refused: keep to this one.
		s.slowList.Store(true)
		slog.Debug("the S3 server refuses presigned listings; listing through minio-go", "target", s.cfg.String())
	}
	return ctx.Err()
}

func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	// GetObject is lazy: Stat makes the request, so a missing key fails here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
		}
		return nil, s.wrap("get", key, err)
	}
	return obj, nil
}

func (s *S3) Delete(ctx context.Context, keys []string) error {
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

// wrapDelete explains the one permission the writer deliberately lacks.
func (s *S3) wrapDelete(key string, err error) error {
	if minio.ToErrorResponse(err).Code == "AccessDenied" || minio.ToErrorResponse(err).StatusCode == http.StatusForbidden {
		return &PermanentError{Config: true, Err: fmt.Errorf("delete s3://%s/%s: %w (these credentials lack s3:DeleteObject on arn:aws:s3:::%s/*; gc needs its own credentials with that permission, see the nixgc policy in docs/operations.md, Keeping the cache small)", s.cfg.Bucket, key, err, s.cfg.Bucket)}
	}
	return s.wrap("delete", key, err)
}

func (f *File) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	// Walk only the directory the prefix names; keys use '/'.
	dir := f.Dir
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = filepath.Join(f.Dir, prefix[:i])
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(f.Dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while we walked
		}
		if err != nil {
			return err
		}
		return fn(ObjectInfo{Key: key, Size: fi.Size(), LastModified: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("list %s/%s*: %w", f.Dir, prefix, err)
	}
	return nil
}

func (f *File) ListRoot(ctx context.Context, fn func(ObjectInfo) error) error {
	entries, err := os.ReadDir(f.Dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", f.Dir, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if err := fn(ObjectInfo{Key: e.Name()}); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	r, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", p, ErrNotFound)
	}
	return r, err
}

func (f *File) Delete(_ context.Context, keys []string) error {
	for _, k := range keys {
		p, err := f.path(k)
		if err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
	return nil
}

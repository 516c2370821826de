package provision

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cache"
)

// opTimeout bounds one request (with minio-go's single retry).
const opTimeout = 30 * time.Second

func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, opTimeout)
}

// adminTarget is the bucket as a cache.Target, through the admin's
// client: enough for nix-cache-info and cachekeys' small objects.
type adminTarget struct {
	s3     *minio.Client
	bucket string
	url    string // the cache's URL, for messages
}

func (t adminTarget) String() string { return t.url }

func (t adminTarget) Exists(ctx context.Context, key string) (bool, error) {
	_, err := t.s3.StatObject(ctx, t.bucket, key, minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false, nil
	}
	return err == nil, err
}

func (t adminTarget) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := t.get(ctx, key)
	if err == nil && b == nil {
		return nil, fmt.Errorf("get %s: %w", key, cache.ErrNotFound)
	}
	return b, err
}

func (t adminTarget) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	_, err := t.s3.PutObject(ctx, t.bucket, key, body, size, minio.PutObjectOptions{ContentType: contentType})
	return err
}

// get returns an object's content, nil when it does not exist.
func (t adminTarget) get(ctx context.Context, key string) ([]byte, error) {
	obj, err := t.s3.GetObject(ctx, t.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 1<<16))
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return nil, nil
	}
	return b, err
}

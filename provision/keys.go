package provision

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/nar"
)

// adminTarget is the bucket as a cache.Target, through the admin's
// client: enough for cachekeys' small objects.
type adminTarget struct{ r *runner }

func (t adminTarget) String() string { return CacheURL(t.r.cfg.Target) }

func (t adminTarget) Exists(ctx context.Context, key string) (bool, error) {
	_, err := t.r.s3.StatObject(ctx, t.r.cfg.Target.Bucket, key, minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false, nil
	}
	return err == nil, err
}

func (t adminTarget) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := t.r.get(ctx, key)
	if err == nil && b == nil {
		return nil, fmt.Errorf("get %s: %w", key, cache.ErrNotFound)
	}
	return b, err
}

func (t adminTarget) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	_, err := t.r.s3.PutObject(ctx, t.r.cfg.Target.Bucket, key, body, size, minio.PutObjectOptions{ContentType: contentType})
	return err
}

// keyStepName is the step that records the key in the cache.
const keyStepName = "key in the cache"

// checkCacheKey refuses a key whose name the cache records with another
// public key, before anything is written. fix ends the message.
func (r *runner) checkCacheKey(ctx context.Context, pk *nar.PublicKey, fix string) error {
	octx, cancel := opContext(ctx)
	defer cancel()
	have, err := cachekeys.Lookup(octx, adminTarget{r}, pk.Name)
	if err != nil {
		return s3Problem("reading "+cachekeys.ObjectKey(pk.Name), r.host, err)
	}
	if have != nil && !have.Key.Equal(pk.Key) {
		return &Problem{Msg: (&cachekeys.ConflictError{Cache: adminTarget{r}.String(), Have: have, Want: pk, Fix: fix}).Error()}
	}
	return nil
}

// recordKey records pk in the cache (cachekeys), as a step.
func (r *runner) recordKey(ctx context.Context, pk *nar.PublicKey, fix string) error {
	octx, cancel := opContext(ctx)
	defer cancel()
	recorded, err := cachekeys.Record(octx, adminTarget{r}, pk)
	var ce *cachekeys.ConflictError
	if errors.As(err, &ce) {
		ce.Fix = fix
		return &Problem{Msg: ce.Error()}
	}
	if err != nil {
		return s3Problem("recording the public key in "+cachekeys.ObjectKey(pk.Name), r.host, err)
	}
	st := Step{Name: keyStepName, Status: StatusExists, Detail: cachekeys.ObjectKey(pk.Name)}
	if recorded {
		st.Status = StatusCreated
	}
	r.step(st)
	return nil
}

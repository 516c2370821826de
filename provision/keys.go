package provision

import (
	"context"
	"errors"

	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/nar"
)

// The signing key's record in the cache (cachekeys), through the admin's
// client. host names the server in messages; fix ends a conflict's.

// checkKeyRecord refuses a key whose name the cache records with another
// public key, before anything is written.
func checkKeyRecord(ctx context.Context, t adminTarget, host string, pk *nar.PublicKey, fix string) error {
	octx, cancel := opContext(ctx)
	defer cancel()
	have, err := cachekeys.Lookup(octx, t, pk.Name)
	if err != nil {
		return s3Problem("reading "+cachekeys.ObjectKey(pk.Name), host, err)
	}
	if have != nil && !have.Key.Equal(pk.Key) {
		return &Problem{Msg: (&cachekeys.ConflictError{Cache: t.String(), Have: have, Want: pk, Fix: fix}).Error()}
	}
	return nil
}

// writeKeyRecord records pk in the cache; recorded is false when it was
// there already.
func writeKeyRecord(ctx context.Context, t adminTarget, host string, pk *nar.PublicKey, fix string) (recorded bool, err error) {
	octx, cancel := opContext(ctx)
	defer cancel()
	recorded, err = cachekeys.Record(octx, t, pk)
	var ce *cachekeys.ConflictError
	if errors.As(err, &ce) {
		ce.Fix = fix
		return false, &Problem{Msg: ce.Error()}
	}
	if err != nil {
		return false, s3Problem("recording the public key in "+cachekeys.ObjectKey(pk.Name), host, err)
	}
	return recorded, nil
}

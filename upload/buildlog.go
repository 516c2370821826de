package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/store"
)

// BuildLogKey is where a binary cache keeps the build log of drvPath:
// log/<base name of the .drv>, as Nix's BinaryCacheStore::addBuildLog
// writes it and `nix log --store URL` / `nix-store -l --store URL` read it.
func BuildLogKey(drvPath string) string { return "log/" + path.Base(drvPath) }

// PushBuildLog uploads the build log Nix kept of drvPath (a .drv) under
// p.BuildLogDir to log/<drv base name>, decompressed, as text/plain
// without Content-Encoding: what `nix store copy-log --to` writes to a
// file:// or http cache (Nix's S3 store compresses only when
// log-compression is set; a file:// cache cannot carry the header). A
// log Nix did not keep is no error: uploaded is false.
//
// The log is written again when present: a rebuild (--check) replaces it,
// as Nix's upsert does. It needs no cache lock: no narinfo points at it.
func (p *Pusher) PushBuildLog(ctx context.Context, drvPath string) (uploaded bool, err error) {
	p.init()
	if p.BuildLogDir == "" {
		return false, nil
	}
	r, size, err := store.OpenBuildLog(p.BuildLogDir, drvPath)
	if errors.Is(err, store.ErrNoBuildLog) {
		return false, nil
	}
	if err != nil {
		return false, cache.Permanent(fmt.Errorf("upload build log of %s: %w", drvPath, err))
	}
	defer r.Close()
	body, ok := r.(io.ReaderAt)
	if !ok || size < 0 {
		// bzip2: decompress once into a temp file, so that each try of
		// the PUT reads it from the start and memory stays flat.
		f, n, err := p.spoolLog(r)
		if err != nil {
			return false, cache.Permanent(fmt.Errorf("upload build log of %s: %w", drvPath, err))
		}
		defer os.Remove(f.Name())
		defer f.Close()
		body, size = f, n
	}
	key := BuildLogKey(drvPath)
	err = p.t.Put(ctx, key, io.NewSectionReader(body, 0, size), size, cache.TypeLog)
	if err != nil {
		return false, fmt.Errorf("upload build log of %s: write %s: %w", drvPath, key, err)
	}
	p.log().Debug("uploaded build log", "STORE_PATH", drvPath, "key", key, "bytes", size)
	return true, nil
}

// spoolLog copies r into a new temp file in p.TempDir and returns it,
// open, with its size.
func (p *Pusher) spoolLog(r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(p.TempDir, "nixpushd-log-*")
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(f, r)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}

package store

import (
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixpushd/nixpushd/nar"
)

// DefaultLogDir is Nix's log directory (the logDir setting): build logs
// are under its drvs/ subdirectory.
const DefaultLogDir = "/nix/var/log/nix"

// ErrNoBuildLog is returned (wrapped) by OpenBuildLog when Nix kept no log
// of the derivation: never built here, keep-build-log off, or collected.
var ErrNoBuildLog = errors.New("no build log")

// BuildLogFile returns where Nix keeps the build log of drvPath under
// logDir, as it writes it: drvs/<first 2 characters of the base
// name>/<the rest>, with ".bz2" appended when compress-build-log is on
// (Nix's default). Nix reads either; so does OpenBuildLog.
func BuildLogFile(logDir, drvPath string) (plain, bz2 string, err error) {
	sp, err := nar.ParseStorePath(drvPath)
	if err != nil {
		return "", "", err
	}
	base := sp.Base()
	if !strings.HasSuffix(base, ".drv") {
		return "", "", fmt.Errorf("build log of %s: not a derivation (.drv)", drvPath)
	}
	plain = filepath.Join(logDir, "drvs", base[:2], base[2:])
	return plain, plain + ".bz2", nil
}

// OpenBuildLog opens the build log Nix kept of drvPath under logDir,
// decompressed: the text `nix-store -l DRV` prints. Like Nix, it prefers
// the plain file when both exist. size is the plain file's size, or -1 for
// a bzip2 one (unknown until read). A missing log gives ErrNoBuildLog.
func OpenBuildLog(logDir, drvPath string) (r io.ReadCloser, size int64, err error) {
	plain, bz2, err := BuildLogFile(logDir, drvPath)
	if err != nil {
		return nil, 0, err
	}
	if f, err := os.Open(plain); err == nil {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("build log %s: %w", plain, err)
		}
		return f, fi.Size(), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("build log %s: %w", plain, err)
	}
	f, err := os.Open(bz2)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %w", drvPath, ErrNoBuildLog)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("build log %s: %w", bz2, err)
	}
	return bz2Reader{Reader: bzip2.NewReader(f), f: f, name: bz2}, -1, nil
}

type bz2Reader struct {
	io.Reader
	f    *os.File
	name string
}

func (b bz2Reader) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("build log %s: %w", b.name, err)
	}
	return n, err
}

func (b bz2Reader) Close() error { return b.f.Close() }

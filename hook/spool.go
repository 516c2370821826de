package hook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/internal/fsutil"
	"github.com/nixpushd/nixpushd/nar"
)

// The spool directory is where `nixpushd hook` leaves the paths of a build
// when it cannot reach the daemon. Each hook run that spools writes one
// file "<unix-nanoseconds>-<pid>-<random>.paths" (the time zero-padded to
// 20 digits, so that names sort oldest first) holding one store path per
// line. The file appears atomically: it is written as ".tmp-*" in the same
// directory, fsynced, renamed and the directory fsynced. The daemon drains
// the directory with DrainSpool.

const (
	spoolSuffix    = ".paths"
	spoolTmpPrefix = ".tmp-"
	// spoolTmpMaxAge is how old a temporary file must be before DrainSpool
	// decides its writer died and removes it.
	spoolTmpMaxAge = time.Minute
	// spoolBatch is the most paths DrainSpool hands to enqueue at once.
	spoolBatch = MaxPaths
	// spoolMaxLine bounds a spool line; longer lines are dropped unread.
	spoolMaxLine = 4096
	// spoolMaxLogged is how many invalid lines of one file are logged
	// one by one; the rest are counted.
	spoolMaxLogged = 10
)

// WriteSpool writes paths into a new spool file in dir (created with mode
// 0755 if missing) and returns its name. The file is complete and durable
// when WriteSpool returns nil. Every path must be a valid store path; with
// no paths it writes nothing and returns "".
func WriteSpool(dir string, paths []string) (string, error) {
	if len(paths) == 0 {
		return "", nil
	}
	if dir == "" {
		return "", errors.New("spool: no spool directory")
	}
	var buf bytes.Buffer
	for _, p := range paths {
		if _, err := nar.ParseStorePath(p); err != nil {
			return "", fmt.Errorf("spool: %w", err)
		}
		buf.WriteString(p)
		buf.WriteByte('\n')
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	name, err := spoolName()
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	final := filepath.Join(dir, name)

	f, err := os.CreateTemp(dir, spoolTmpPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// The hook may run as root and the daemon as its own user: the
	// paths are no secret (the store is world-readable).
	if err := f.Chmod(0o644); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	ok = true
	if err := fsutil.SyncDir(dir); err != nil {
		// The file is there, but a crash could still lose it.
		return final, fmt.Errorf("spool: %w", err)
	}
	return final, nil
}

// spoolName returns a fresh file name; names sort in creation order.
func spoolName() (string, error) {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%020d-%d-%s%s", time.Now().UnixNano(), os.Getpid(), hex.EncodeToString(r[:]), spoolSuffix), nil
}

// DrainSpool hands the paths in every *.paths file of dir to enqueue, in
// name order (oldest first), and removes each file once enqueue (which
// makes the paths durable) succeeded for all of its paths. Invalid lines
// are logged with the file name and line number and dropped; a file that
// cannot be read is logged and left in place. Temporary files younger
// than a minute are left alone (a hook may be writing them); older ones
// are removed. A missing dir is not an error.
//
// If enqueue fails, DrainSpool stops and returns the error, leaving the
// file in place (paths of it already enqueued will be enqueued again next
// time, which is harmless). It returns the number of paths enqueue
// accepted.
func DrainSpool(ctx context.Context, dir string, enqueue func(ctx context.Context, paths []string) error, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("spool: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, spoolTmpPrefix):
			spoolCleanTmp(dir, e, log)
		case strings.HasSuffix(name, spoolSuffix) && e.Type().IsRegular():
			files = append(files, name)
		}
	}
	sort.Strings(files) // ReadDir sorts already; make the order explicit.

	total := 0
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := spoolDrainFile(ctx, dir, name, enqueue, log)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func spoolCleanTmp(dir string, e fs.DirEntry, log *slog.Logger) {
	info, err := e.Info()
	if err != nil {
		return // gone meanwhile (renamed by its writer)
	}
	if !info.Mode().IsRegular() || time.Since(info.ModTime()) < spoolTmpMaxAge {
		return
	}
	p := filepath.Join(dir, e.Name())
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("spool: cannot remove stale temporary file", "file", p, "err", err)
		return
	}
	log.Info("spool: removed stale temporary file of an interrupted hook", "file", p)
}

// spoolDrainFile enqueues the valid paths of one spool file and removes
// it. Only an enqueue error is returned; other problems are logged.
func spoolDrainFile(ctx context.Context, dir, name string, enqueue func(ctx context.Context, paths []string) error, log *slog.Logger) (int, error) {
	p := filepath.Join(dir, name)
	f, err := os.Open(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // drained by someone else
			log.Error("spool: cannot open spool file; leaving it", "file", p, "err", err)
		}
		return 0, nil
	}
	defer f.Close()

	total := 0
	var batch []string
	seen := make(map[string]bool)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := enqueue(ctx, batch); err != nil {
			return fmt.Errorf("spool: enqueue paths of %s: %w", p, err)
		}
		for _, sp := range batch {
			log.Debug("spool: queued", "STORE_PATH", sp, "file", p)
		}
		total += len(batch)
		batch = nil
		clear(seen)
		return nil
	}

	invalid := 0
	err = spoolReadLines(f, spoolMaxLine, func(lineNo int, line []byte, tooLong bool) error {
		var perr error
		text := string(bytes.TrimSpace(line))
		switch {
		case tooLong:
			perr = fmt.Errorf("line longer than %d bytes", spoolMaxLine)
		case text == "":
			return nil
		default:
			_, perr = nar.ParseStorePath(text)
		}
		if perr != nil {
			invalid++
			if invalid <= spoolMaxLogged {
				log.Warn("spool: dropping invalid line", "file", p, "line", lineNo, "err", perr)
			}
			return nil
		}
		if seen[text] {
			return nil
		}
		seen[text] = true
		batch = append(batch, text)
		if len(batch) >= spoolBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if invalid > spoolMaxLogged {
		log.Warn("spool: dropped more invalid lines", "file", p, "count", invalid-spoolMaxLogged)
	}
	if err != nil {
		var rerr *spoolReadError
		if errors.As(err, &rerr) {
			log.Error("spool: cannot read spool file; leaving it", "file", p, "err", rerr.err)
			return total, nil
		}
		return total, err
	}
	f.Close()
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Its paths are queued; draining it again later only repeats them.
		log.Error("spool: cannot remove drained spool file", "file", p, "err", err)
	} else {
		log.Info("spool: drained", "file", p, "paths", total, "invalid_lines", invalid)
	}
	return total, nil
}

type spoolReadError struct{ err error }

func (e *spoolReadError) Error() string { return e.err.Error() }

// spoolReadLines calls fn for each line of r (numbered from 1, without
// its "\n"; a last line without "\n" counts too). Lines longer than max
// are passed as tooLong with no content. Read errors come back as
// *spoolReadError; fn's errors as they are.
func spoolReadLines(r io.Reader, max int, fn func(lineNo int, line []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, max+1)
	lineNo := 0
	for {
		line, err := br.ReadSlice('\n')
		tooLong := false
		if errors.Is(err, bufio.ErrBufferFull) {
			tooLong = true
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if len(line) > 0 || tooLong {
			lineNo++
			if ferr := fn(lineNo, bytes.TrimSuffix(line, []byte("\n")), tooLong); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return &spoolReadError{err}
		}
	}
}

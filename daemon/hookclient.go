package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// hookDefaultTimeout bounds the socket attempt of Hook when it is given no
// timeout.
const hookDefaultTimeout = 2 * time.Second

// hookMaxListed is how many invalid tokens Hook's error quotes.
const hookMaxListed = 5

// HookResult tells what Hook did with the paths of a build.
type HookResult struct {
	Sent      int    // paths the daemon acknowledged (durably queued)
	Spooled   int    // paths written to the spool directory
	SpoolFile string // the spool file, when Spooled > 0
	// Added is how many of the sent paths the daemon did not have queued.
	Added int
	// SocketErr says why paths were spooled instead of sent (nil when
	// nothing was spooled). It is information, not a failure.
	SocketErr error
}

// Hook delivers the store paths of one build to the daemon. outPaths is
// the post-build-hook's OUT_PATHS (whitespace-separated store paths) and
// drvPath its DRV_PATH (may be empty); the derivation is delivered as a
// path too, and the daemon decides whether to push it.
//
// Hook tries the daemon's socket for at most timeout in total (2s when
// timeout <= 0). If that fails in any way (no daemon, no socket, timeout,
// an ERR reply other than "bad request") it writes the paths it could not
// send to a spool file in spoolDir, which the daemon drains later. A path
// may thus be delivered twice (sent, but the reply lost), never zero times.
//
// Invalid tokens are dropped and named in the returned error, while the
// valid paths are still delivered. Apart from that, Hook returns an error
// only when it could neither send nor spool. Either way the caller should
// print the error and exit 0, so that the build does not fail.
func Hook(ctx context.Context, socket, spoolDir, outPaths, drvPath string, timeout time.Duration) (HookResult, error) {
	var res HookResult
	paths, invalidErr := hookPaths(outPaths, drvPath)
	if len(paths) == 0 {
		return res, invalidErr
	}
	if timeout <= 0 {
		timeout = hookDefaultTimeout
	}
	sendCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var rejected []error // batches the daemon refused as malformed
	var unsent []string
	batches := hookBatches(paths)
	for i, batch := range batches {
		line := ParsedRequest{Verb: VerbPush, Paths: batch}.String()
		reply, err := Request(sendCtx, socket, line)
		if err != nil {
			var rerr *ReplyError
			if errors.As(err, &rerr) && rerr.BadRequest() {
				// We checked the paths as the daemon does, so this is a
				// version mismatch; a spooled copy would be dropped too.
				rejected = append(rejected, fmt.Errorf("daemon rejected %d paths: %w", len(batch), err))
				continue
			}
			res.SocketErr = err
			for _, b := range batches[i:] {
				unsent = append(unsent, b...)
			}
			break
		}
		res.Sent += len(batch)
		if n, err := strconv.Atoi(strings.TrimSpace(reply)); err == nil {
			res.Added += n
		}
	}

	var spoolErr error
	if len(unsent) > 0 {
		name, err := WriteSpool(spoolDir, unsent)
		if name != "" {
			// Written; at worst the directory fsync failed.
			res.Spooled, res.SpoolFile = len(unsent), name
		} else {
			spoolErr = fmt.Errorf("could not deliver %d store paths: socket %s: %v; %w", len(unsent), socket, res.SocketErr, err)
		}
	}
	return res, errors.Join(invalidErr, errors.Join(rejected...), spoolErr)
}

// hookPaths returns the valid, distinct paths of OUT_PATHS and DRV_PATH,
// and an error naming the invalid tokens.
func hookPaths(outPaths, drvPath string) ([]string, error) {
	toks := strings.Fields(outPaths)
	if d := strings.TrimSpace(drvPath); d != "" {
		toks = append(toks, d)
	}
	var paths, bad []string
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		if err := protoCheckPath(t); err != nil {
			if len(bad) < hookMaxListed {
				bad = append(bad, err.Error())
			} else if len(bad) == hookMaxListed {
				bad = append(bad, "...")
			}
			continue
		}
		if !seen[t] {
			seen[t] = true
			paths = append(paths, t)
		}
	}
	if len(bad) == 0 {
		return paths, nil
	}
	return paths, fmt.Errorf("ignored invalid OUT_PATHS/DRV_PATH entries: %s", strings.Join(bad, "; "))
}

// hookBatches splits paths into PUSH requests within MaxPaths and
// MaxLine.
func hookBatches(paths []string) [][]string {
	if len(paths) == 0 {
		return nil
	}
	var out [][]string
	start, size := 0, len(VerbPush)
	for i, p := range paths {
		if i > start && (i-start == MaxPaths || size+1+len(p) > MaxLine) {
			out = append(out, paths[start:i])
			start, size = i, len(VerbPush)
		}
		size += 1 + len(p)
	}
	return append(out, paths[start:])
}

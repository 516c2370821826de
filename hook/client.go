package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// How often dialSocket retries a full backlog: soon, then every 10 ms.
const (
	dialRetryMin = 100 * time.Microsecond
	dialRetryMax = 10 * time.Millisecond
)

// ReplyError is an "ERR" reply from the daemon.
type ReplyError struct {
	Msg string // the text after "ERR "
}

func (e *ReplyError) Error() string { return "daemon replied: " + e.Msg }

// BadRequest reports whether the daemon rejected the request itself as
// malformed, so that sending it again (now or later) cannot succeed.
func (e *ReplyError) BadRequest() bool { return strings.HasPrefix(e.Msg, badRequest) }

// Push asks the daemon listening on socket to queue paths, and returns how
// many it did not have queued already. The paths must be valid store paths
// that fit one request (see Batches). The daemon replies once they are on
// disk in its queue. An "ERR" reply gives a *ReplyError.
func Push(ctx context.Context, socket string, paths []string) (added int, err error) {
	reply, err := roundTrip(ctx, socket, Request{Verb: VerbPush, Paths: paths})
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(reply)
	if err != nil {
		return 0, fmt.Errorf("%s: unexpected reply to PUSH: OK %s", socket, quote(reply))
	}
	return n, nil
}

// Status returns the status of the daemon listening on socket, as JSON.
func Status(ctx context.Context, socket string) ([]byte, error) {
	reply, err := roundTrip(ctx, socket, Request{Verb: VerbStatus})
	if err != nil {
		return nil, err
	}
	return []byte(reply), nil
}

// Batches splits paths into groups that each fit one PUSH request
// (MaxPaths and MaxLine).
func Batches(paths []string) [][]string {
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

// roundTrip sends req and returns the text of the reply after "OK ".
// Dialing, writing and reading all end with ctx.
func roundTrip(ctx context.Context, socket string, req Request) (string, error) {
	line := req.String()
	if len(line) > MaxLine {
		return "", fmt.Errorf("request too long: %d bytes (max %d)", len(line), MaxLine)
	}
	if _, err := ParseRequest(line); err != nil {
		return "", fmt.Errorf("invalid request: %w", err)
	}
	conn, err := dialSocket(ctx, socket)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := closeOnDone(ctx, conn)
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", err
		}
	}
	ctxErr := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w", socket, context.Cause(ctx))
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The conn deadline is ctx's; its timer may not have fired yet.
			return fmt.Errorf("%s: no reply in time: %w", socket, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: %w", socket, err)
	}
	_, werr := io.WriteString(conn, line+"\n")
	// A daemon that turns us away ("ERR busy") may hang up before it
	// reads: its reply is still there to read after a failed write.
	b, err := readLine(conn, maxReply)
	switch {
	case err != nil && werr != nil:
		return "", ctxErr(werr)
	case err != nil:
		if errors.Is(err, io.EOF) {
			err = errors.New("connection closed without a reply")
		}
		return "", ctxErr(err)
	}
	reply := string(b)
	if r, ok := strings.CutPrefix(reply, "OK "); ok {
		return r, nil
	}
	if r, ok := strings.CutPrefix(reply, "ERR "); ok {
		return "", &ReplyError{Msg: r}
	}
	return "", fmt.Errorf("%s: unexpected reply %s", socket, quote(reply))
}

// dialSocket connects to socket. A full listen backlog (EAGAIN: clients
// connect faster than the daemon accepts, as in a flood of connections)
// is retried until ctx ends: the daemon takes one connection off it every
// few microseconds.
func dialSocket(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	delay := dialRetryMin
	for {
		conn, err := d.DialContext(ctx, "unix", socket)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (the daemon's listen backlog stayed full)", err)
		}
		delay = min(2*delay, dialRetryMax)
	}
}

// The post-build-hook.

// deliverTimeout bounds the socket attempt of Deliver when it is given no
// timeout.
const deliverTimeout = 2 * time.Second

// maxListed is how many invalid tokens Deliver's error quotes.
const maxListed = 5

// Result tells what Deliver did with the paths of a build.
type Result struct {
	Sent      int    // paths the daemon acknowledged (durably queued)
	Spooled   int    // paths written to the spool directory
	SpoolFile string // the spool file, when Spooled > 0
	// Added is how many of the sent paths the daemon did not have queued.
	Added int
	// SocketErr says why paths were spooled instead of sent (nil when
	// nothing was spooled). It is information, not a failure.
	SocketErr error
}

// Deliver hands the store paths of one build to the daemon: it is the
// post-build-hook. outPaths is the hook's OUT_PATHS (whitespace-separated
// store paths) and drvPath its DRV_PATH (may be empty); the derivation is
// delivered as a path too, and the daemon decides whether to push it.
//
// Deliver tries the daemon's socket for at most timeout in total (2s when
// timeout <= 0). If that fails in any way (no daemon, no socket, timeout,
// an ERR reply other than "bad request") it writes the paths it could not
// send to a spool file in spoolDir, which the daemon drains later. A path
// may thus be delivered twice (sent, but the reply lost), never zero times.
//
// Invalid tokens are dropped and named in the returned error, while the
// valid paths are still delivered. Apart from that, Deliver returns an
// error only when it could neither send nor spool. Either way the caller
// should print the error and exit 0, so that the build does not fail.
func Deliver(ctx context.Context, socket, spoolDir, outPaths, drvPath string, timeout time.Duration) (Result, error) {
	var res Result
	paths, invalidErr := buildPaths(outPaths, drvPath)
	if len(paths) == 0 {
		return res, invalidErr
	}
	if timeout <= 0 {
		timeout = deliverTimeout
	}
	sendCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var rejected []error // batches the daemon refused as malformed
	var unsent []string
	batches := Batches(paths)
	for i, batch := range batches {
		added, err := Push(sendCtx, socket, batch)
		if err != nil {
			var rerr *ReplyError
			if errors.As(err, &rerr) && rerr.BadRequest() {
				// We checked the paths as the daemon does, so this is a
				// version mismatch; a spooled copy would be dropped too.
				rejected = append(rejected, fmt.Errorf("daemon rejected %s: %w", pathCount(len(batch)), err))
				continue
			}
			res.SocketErr = err
			for _, b := range batches[i:] {
				unsent = append(unsent, b...)
			}
			break
		}
		res.Sent += len(batch)
		res.Added += added
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

// buildPaths returns the valid, distinct paths of OUT_PATHS and DRV_PATH,
// and an error naming the invalid tokens.
func buildPaths(outPaths, drvPath string) ([]string, error) {
	toks := strings.Fields(outPaths)
	if d := strings.TrimSpace(drvPath); d != "" {
		toks = append(toks, d)
	}
	var paths, bad []string
	seen := make(map[string]bool, len(toks))
	for _, t := range toks {
		if err := checkPath(t); err != nil {
			if len(bad) < maxListed {
				bad = append(bad, err.Error())
			} else if len(bad) == maxListed {
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

// pathCount writes "1 path", "2 paths".
func pathCount(n int) string {
	if n == 1 {
		return "1 path"
	}
	return fmt.Sprintf("%d paths", n)
}

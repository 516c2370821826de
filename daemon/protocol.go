package daemon

// The hook socket protocol
//
// `nixpushd hook` (run by Nix's post-build-hook), `nixpushd push
// --via-daemon` and `nixpushd status` talk to the daemon over a Unix stream
// socket (default /run/nixpushd/nixpushd.sock) with a line protocol:
//
//   - A request is one line terminated by "\n" (a "\r\n" terminator is also
//     accepted). It is at most MaxLine (1048576) bytes long, not counting
//     the terminator, and must be valid UTF-8 without NUL bytes.
//   - The line is an upper-case verb followed by its arguments, separated by
//     spaces. Runs of spaces count as one separator and leading or trailing
//     spaces are ignored; tabs and other whitespace are not separators.
//     Verbs are case-sensitive.
//   - Every request gets exactly one reply line, in order, either
//     "OK <text>" or "ERR <message>", where the message is one line.
//     A client may send several requests on one connection, and may send
//     the next one before reading the previous reply.
//
// Requests:
//
//	PUSH <store-path> [<store-path>...]
//	    Queue store paths for upload. Each path must be a canonical store
//	    path, /nix/store/<32-character hash>-<name>: no relative paths,
//	    other directories, paths inside a store path or "..". At most
//	    MaxPaths (4096) paths per request; duplicates are allowed. A request
//	    with any invalid path is rejected whole and nothing is queued.
//	    The reply "OK <n>" is sent only once the paths are on disk in the
//	    daemon's queue; n is the number of paths that were not already
//	    queued.
//	STATUS
//	    Reply "OK <json>": the daemon's status as one line of JSON.
//	PING
//	    Reply "OK pong".
//
// Errors:
//
//	ERR bad request: <detail>
//	    The request is malformed (unknown verb, empty line, NUL byte,
//	    invalid UTF-8, invalid store path, too many paths, arguments to
//	    STATUS or PING...). The detail names the offending token, quoted
//	    and cut to about 100 bytes. Sending the same request again will
//	    fail again. The connection stays usable.
//	ERR line too long (max 1048576 bytes)
//	    The daemon cannot find the next request in the stream, so it
//	    closes the connection after this reply.
//	ERR <message>
//	    Any other message is a failure on the daemon's side (for example
//	    "ERR enqueue: ..." when the queue cannot be written); the request
//	    may succeed later.
//
// A final line without "\n" (the client closed the connection mid-line) is
// discarded, not answered. Each request line must arrive complete within 5
// minutes of the previous reply (or of connecting), or the daemon closes
// the connection. The daemon serves a bounded number of connections at
// once; further clients wait to be accepted.
//
// The socket is for local use only: anyone who can connect can queue any
// store path for upload, so its permissions decide who may push.
//
// Example, with socat:
//
//	$ printf 'PING\nPUSH /nix/store/0c8jh4lmcv1g5wzw1xzyfwnhsp6rz2qq-hello-2.12.1\n' |
//	    socat - UNIX-CONNECT:/run/nixpushd/nixpushd.sock
//	OK pong
//	OK 1

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nixpushd/nixpushd/nar"
)

const (
	// MaxLine is the longest request line, in bytes, not counting the
	// "\n" or "\r\n" that ends it.
	MaxLine = 1 << 20
	// MaxPaths is the most store paths one PUSH request may carry.
	MaxPaths = 4096
)

// The protocol's verbs.
const (
	VerbPush   = "PUSH"
	VerbStatus = "STATUS"
	VerbPing   = "PING"
)

const (
	// protoBadRequest starts the message of an ERR reply to a malformed
	// request (the client's fault; resending will not help).
	protoBadRequest = "bad request: "
	// protoTooLong starts the ERR reply to a line longer than MaxLine.
	protoTooLong = "line too long"
	// protoSource is the source ServeConn passes to Handler.Enqueue.
	protoSource = "socket"
	// protoMaxStorePath is the longest valid store path:
	// /nix/store/ + hash + "-" + name.
	protoMaxStorePath = len(nar.StoreDir) + 1 + nar.HashLen + 1 + nar.MaxNameLen
	// protoQuoteMax is how much of an offending token an error quotes.
	protoQuoteMax = 100
	// protoMaxMessage bounds the ERR messages ServeConn sends.
	protoMaxMessage = 4096
	// protoMaxReply bounds the reply line a client accepts (STATUS JSON
	// can be long).
	protoMaxReply = 16 << 20
	// protoMaxLoggedBad is how many bad requests per connection are
	// logged as warnings.
	protoMaxLoggedBad = 3
	// protoWriteTimeout bounds writing one reply to a client that does
	// not read.
	protoWriteTimeout = 30 * time.Second
)

// protoIdleTimeout is how long ServeConn waits for the next request line.
// A variable so that tests can shorten it.
var protoIdleTimeout = 5 * time.Minute

var errProtoLineTooLong = errors.New(protoTooLong)

// ParsedRequest is a parsed request line. (It cannot be called Request:
// that is the client function.)
type ParsedRequest struct {
	Verb  string   // VerbPush, VerbStatus or VerbPing
	Paths []string // PUSH only: 1 to MaxPaths valid store paths
}

// String renders r as a request line, without the terminating "\n".
// ParseRequest(r.String()) gives r back for any request ParseRequest
// accepted.
func (r ParsedRequest) String() string {
	if len(r.Paths) == 0 {
		return r.Verb
	}
	return r.Verb + " " + strings.Join(r.Paths, " ")
}

// ParseRequest parses one request line. A trailing "\n" or "\r\n" is
// allowed. Errors are one line, name the offending token (quoted, cut to
// about 100 bytes) and do not start with "bad request: ", which ServeConn
// adds.
func ParseRequest(line []byte) (ParsedRequest, error) {
	if l, ok := bytes.CutSuffix(line, []byte("\n")); ok {
		line = bytes.TrimSuffix(l, []byte("\r"))
	}
	if len(line) > MaxLine {
		return ParsedRequest{}, fmt.Errorf("line too long: %d bytes (max %d)", len(line), MaxLine)
	}
	if i := bytes.IndexByte(line, 0); i >= 0 {
		return ParsedRequest{}, fmt.Errorf("NUL byte at offset %d", i)
	}
	if !utf8.Valid(line) {
		return ParsedRequest{}, fmt.Errorf("invalid UTF-8 at offset %d", protoInvalidUTF8At(line))
	}
	s := string(line)
	toks, more := protoSplit(s, MaxPaths+1)
	if len(toks) == 0 {
		return ParsedRequest{}, errors.New("empty request")
	}
	verb, args := toks[0], toks[1:]
	switch verb {
	case VerbStatus, VerbPing:
		if len(args) > 0 {
			return ParsedRequest{}, fmt.Errorf("%s takes no arguments, got %s", verb, protoQuote(args[0]))
		}
		return ParsedRequest{Verb: verb}, nil
	case VerbPush:
		if len(args) == 0 {
			return ParsedRequest{}, errors.New("PUSH needs at least one store path")
		}
		if len(args) > MaxPaths || more {
			return ParsedRequest{}, fmt.Errorf("too many paths: more than %d in one PUSH", MaxPaths)
		}
		paths := make([]string, len(args))
		for i, a := range args {
			if err := protoCheckPath(a); err != nil {
				return ParsedRequest{}, err
			}
			// Do not keep the whole line alive through one path.
			paths[i] = strings.Clone(a)
		}
		return ParsedRequest{Verb: VerbPush, Paths: paths}, nil
	}
	var hint string
	switch {
	case protoIsVerb(strings.ToUpper(verb)):
		hint = " (verbs are upper case)"
	case strings.ContainsAny(verb, "\t\v\f\r\n\u00a0"):
		hint = " (separate arguments with spaces)"
	default:
		hint = " (want PUSH, STATUS or PING)"
	}
	return ParsedRequest{}, fmt.Errorf("unknown verb %s%s", protoQuote(verb), hint)
}

func protoIsVerb(v string) bool {
	return v == VerbPush || v == VerbStatus || v == VerbPing
}

// protoSplit splits s at runs of spaces, returning at most max tokens and
// whether there were more.
func protoSplit(s string, max int) (toks []string, more bool) {
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return toks, false
		}
		if len(toks) == max {
			return toks, true
		}
		tok := s
		if i := strings.IndexByte(s, ' '); i >= 0 {
			tok, s = s[:i], s[i:]
		} else {
			s = ""
		}
		toks = append(toks, tok)
	}
}

// protoCheckPath validates one PUSH argument, with an error that quotes
// a bounded part of it.
func protoCheckPath(p string) error {
	if len(p) > protoMaxStorePath {
		return fmt.Errorf("invalid store path %s: %d bytes long, store paths have at most %d", protoQuote(p), len(p), protoMaxStorePath)
	}
	if _, err := nar.ParseStorePath(p); err != nil {
		msg := err.Error()
		// nar says `store path "<p>": <reason>`; keep the reason only.
		if r, ok := strings.CutPrefix(msg, "store path "+strconv.Quote(p)+": "); ok {
			msg = r
		}
		return fmt.Errorf("invalid store path %s: %s", protoQuote(p), msg)
	}
	return nil
}

// protoQuote quotes s for an error message, cut to about protoQuoteMax
// bytes. The result is one line.
func protoQuote(s string) string {
	if len(s) <= protoQuoteMax {
		return strconv.Quote(s)
	}
	cut := protoQuoteMax
	for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

func protoInvalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// protoOneLine makes msg safe to send after "ERR ": one line, bounded.
func protoOneLine(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > protoMaxMessage {
		cut := protoMaxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	if msg == "" {
		msg = "unknown error"
	}
	return msg
}

// Handler is what the daemon provides to ServeConn and Serve.
type Handler interface {
	// Enqueue queues valid store paths. It returns only once they are
	// durable on disk; added is how many were not queued already.
	Enqueue(ctx context.Context, paths []string, source string) (added int, err error)
	// StatusJSON returns the daemon's status as JSON.
	StatusJSON(ctx context.Context) ([]byte, error)
}

// ServeConn serves requests on conn until EOF, a read or write error, a
// line longer than MaxLine, 5 minutes without a request, or the end of
// ctx. It closes conn before returning. Paths are passed to h.Enqueue
// with source "socket". A nil log discards.
func ServeConn(ctx context.Context, conn net.Conn, h Handler, log *slog.Logger) {
	protoServeConn(ctx, conn, h, log, MaxLine)
}

// protoServeConn is ServeConn with a line limit of maxLine bytes.
func protoServeConn(ctx context.Context, conn net.Conn, h Handler, log *slog.Logger, maxLine int) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defer conn.Close()
	stop := protoCloseOnDone(ctx, conn)
	defer stop()

	idle := protoIdleTimeout
	bad := 0 // bad requests so far, to keep a garbage flood out of the log
	br := bufio.NewReaderSize(conn, 64<<10)
	bw := bufio.NewWriterSize(conn, 16<<10)
	reply := func(s string) error {
		if err := conn.SetWriteDeadline(time.Now().Add(protoWriteTimeout)); err != nil {
			return err
		}
		bw.WriteString(s)
		bw.WriteByte('\n')
		// Replies to pipelined requests go out in one write; flush
		// before ServeConn may wait for input.
		if protoHasLine(br) {
			return nil
		}
		return bw.Flush()
	}
	for {
		if err := conn.SetReadDeadline(time.Now().Add(idle)); err != nil {
			log.Debug("socket: set read deadline", "err", err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		line, err := protoReadLine(br, maxLine)
		if errors.Is(err, errProtoLineTooLong) {
			log.Warn("socket: request line too long; closing connection", "max", maxLine)
			if err := conn.SetWriteDeadline(time.Now().Add(protoWriteTimeout)); err == nil {
				fmt.Fprintf(bw, "ERR %s (max %d bytes)\n", protoTooLong, maxLine)
				bw.Flush()
			}
			return
		}
		if err != nil {
			// Replies to earlier lines of this read are still due.
			if bw.Buffered() > 0 && conn.SetWriteDeadline(time.Now().Add(protoWriteTimeout)) == nil {
				bw.Flush()
			}
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Debug("socket: connection ended", "err", err)
			}
			return
		}
		if err := reply(protoHandle(ctx, line, h, log, &bad)); err != nil {
			if ctx.Err() == nil {
				log.Debug("socket: write reply", "err", err)
			}
			return
		}
	}
}

// protoHasLine reports whether br holds a complete line already.
func protoHasLine(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// protoHandle answers one request line (without its terminator).
func protoHandle(ctx context.Context, line []byte, h Handler, log *slog.Logger, bad *int) string {
	req, err := ParseRequest(line)
	if err != nil {
		*bad++
		switch {
		case *bad <= protoMaxLoggedBad:
			log.Warn("socket: bad request", "err", err)
		case *bad == protoMaxLoggedBad+1:
			log.Warn("socket: more bad requests on this connection; logging them at debug level")
			fallthrough
		default:
			log.Debug("socket: bad request", "err", err)
		}
		return "ERR " + protoOneLine(protoBadRequest+err.Error())
	}
	switch req.Verb {
	case VerbPing:
		return "OK pong"
	case VerbStatus:
		js, err := h.StatusJSON(ctx)
		if err != nil {
			log.Warn("socket: status", "err", err)
			return "ERR " + protoOneLine("status: "+err.Error())
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, js); err != nil {
			log.Error("socket: status handler returned invalid JSON", "err", err)
			return "ERR status: invalid JSON from the daemon"
		}
		return "OK " + buf.String()
	case VerbPush:
		added, err := h.Enqueue(ctx, req.Paths, protoSource)
		if err != nil {
			log.Error("socket: enqueue failed", "paths", len(req.Paths), "err", err)
			return "ERR " + protoOneLine("enqueue: "+err.Error())
		}
		if log.Enabled(ctx, slog.LevelDebug) {
			for _, p := range req.Paths {
				log.Debug("socket: queued", "STORE_PATH", p)
			}
		}
		return "OK " + strconv.Itoa(added)
	}
	// ParseRequest only accepts the verbs above.
	return "ERR internal error: unhandled verb"
}

// protoReadLine reads one "\n"-terminated line and returns it without
// "\n" and without one "\r" before it. A line longer than max (not
// counting the terminator) gives errProtoLineTooLong, detected without
// buffering more than about max bytes. An unterminated line at EOF gives
// io.EOF (or the read error) and is discarded.
func protoReadLine(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			buf = append(buf, frag[:len(frag)-1]...)
			buf = bytes.TrimSuffix(buf, []byte("\r"))
			if len(buf) > max {
				return nil, errProtoLineTooLong
			}
			if buf == nil {
				buf = []byte{}
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, frag...)
			// max+1 bytes may still be a max-byte line and its "\r".
			if len(buf) > max+1 {
				return nil, errProtoLineTooLong
			}
		default:
			if len(buf)+len(frag) > max+1 {
				return nil, errProtoLineTooLong
			}
			return nil, err
		}
	}
}

// protoCloseOnDone closes c when ctx ends. The returned stop function
// cancels that and, if the close already started, waits for it, so no
// goroutine is left behind.
func protoCloseOnDone(ctx context.Context, c io.Closer) (stop func()) {
	done := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(done)
		c.Close()
	})
	return func() {
		if !stopAfter() {
			<-done
		}
	}
}

// Serve accepts connections on ln and serves each with ServeConn, at most
// maxConns at once (values below 1 mean 1); further clients wait in the
// listen backlog. When ctx ends it closes ln, closes the open connections
// and waits for all their goroutines, then returns nil. It also closes ln
// when it returns an error (the listener failed).
func Serve(ctx context.Context, ln net.Listener, h Handler, maxConns int, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if maxConns < 1 {
		maxConns = 1
	}
	defer ln.Close()
	stop := protoCloseOnDone(ctx, ln)
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxConns)
	var backoff time.Duration
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("socket: accept: %w", err)
			}
			// EMFILE, ECONNABORTED and the like: wait and try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("socket: accept failed; retrying", "err", err, "delay", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		wg.Go(func() {
			defer func() { <-sem }()
			ServeConn(ctx, conn, h, log)
		})
	}
}

// ReplyError is an "ERR" reply from the daemon.
type ReplyError struct {
	Msg string // the text after "ERR "
}

func (e *ReplyError) Error() string { return "daemon replied: " + e.Msg }

// BadRequest reports whether the daemon rejected the request itself as
// malformed, so that sending it again (now or later) cannot succeed.
func (e *ReplyError) BadRequest() bool {
	return strings.HasPrefix(e.Msg, protoBadRequest) || strings.HasPrefix(e.Msg, protoTooLong)
}

// Request sends one request line (without "\n") to the daemon listening
// on the Unix socket and returns the text of its reply after "OK " (""
// for a bare "OK"). An "ERR" reply gives a *ReplyError. Dialing, writing
// and reading all end with ctx.
func Request(ctx context.Context, socket string, line string) (string, error) {
	if strings.ContainsAny(line, "\n") {
		return "", errors.New("request contains a newline")
	}
	if len(line) > MaxLine {
		return "", fmt.Errorf("request too long: %d bytes (max %d)", len(line), MaxLine)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := protoCloseOnDone(ctx, conn)
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
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", ctxErr(err)
	}
	reply, err := protoReadLine(bufio.NewReader(conn), protoMaxReply)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("connection closed without a reply")
		}
		return "", ctxErr(err)
	}
	r := string(reply)
	switch {
	case r == "OK":
		return "", nil
	case strings.HasPrefix(r, "OK "):
		return r[3:], nil
	case strings.HasPrefix(r, "ERR "):
		return "", &ReplyError{Msg: r[4:]}
	}
	return "", fmt.Errorf("%s: unexpected reply %s", socket, protoQuote(r))
}

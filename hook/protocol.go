package hook

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

// Where the daemon and the hook meet by default: nixpushd.socket in
// nixos-module/ listens on DefaultSocket, and the daemon drains
// STATE-DIR/spool, which is DefaultSpoolDir for the default state directory.
const (
	DefaultSocket   = "/run/nixpushd/nixpushd.sock"
	DefaultSpoolDir = "/var/lib/nixpushd/spool"
)

const (
	// MaxLine is the longest request line, in bytes, without its "\n".
	MaxLine = 1 << 20
	// MaxPaths is the most store paths one PUSH request may carry.
	MaxPaths = 4096
)

// The protocol's verbs.
const (
	VerbPush   = "PUSH"
	VerbStatus = "STATUS"
)

const (
	// badRequest starts the message of an ERR reply to a malformed
	// request (the client's fault; resending will not help).
	badRequest = "bad request: "
	// source is what Serve passes to Handler.Enqueue.
	source = "socket"
	// requestDeadline is how long a client has, from its accept, to send
	// its whole request line. The hook and the CLI send it at once; a
	// connection that has not by then is hung or hostile, and is closed.
	requestDeadline = 2 * time.Second
	// maxOpen is how many connections from root and the daemon's user are
	// open at once: being read, waiting or answered. Each idle one is a
	// goroutine and a 4 KiB buffer, and is closed after requestDeadline.
	maxOpen = 1024
	// maxHandling is how many of their requests are in the Handler at
	// once.
	maxHandling = 32
	// maxStatusConns is how many connections other users (--status-group
	// members, who may only ask STATUS) have open at once; more are
	// refused. They never take the slots above.
	maxStatusConns = 8
	// refuseTimeout bounds writing "ERR busy" to a refused connection.
	refuseTimeout = 10 * time.Millisecond
	// refuseLogEvery is how often refusals are logged, at most.
	refuseLogEvery = 10 * time.Second
	// After answering an over-long line, the daemon reads and discards
	// for at most drainTimeout and maxDrain bytes, so that a client still
	// writing can finish and read the reply.
	drainTimeout = time.Second
	maxDrain     = 32 << 20
	// maxStorePath is the longest valid store path:
	// /nix/store/ + hash + "-" + name.
	maxStorePath = len(nar.StoreDir) + 1 + nar.HashLen + 1 + nar.MaxNameLen
	// quoteMax is how much of an offending token an error quotes.
	quoteMax = 100
	// maxMessage bounds the ERR messages the daemon sends.
	maxMessage = 4096
	// maxReply bounds the reply line a client accepts (STATUS JSON can be
	// long).
	maxReply = 16 << 20
	// writeTimeout bounds writing the reply to a client that does not read.
	writeTimeout = 30 * time.Second
)

var errLineTooLong = errors.New("line too long")

// Request is a parsed request line.
type Request struct {
	Verb  string   // VerbPush or VerbStatus
	Paths []string // PUSH only: 1 to MaxPaths valid store paths
}

// String renders r as its request line, without the "\n". For any request
// ParseRequest accepted, ParseRequest(r.String()) gives r back and r.String()
// is the line it parsed.
func (r Request) String() string {
	if len(r.Paths) == 0 {
		return r.Verb
	}
	return r.Verb + " " + strings.Join(r.Paths, " ")
}

// ParseRequest parses one request line, without its "\n". Errors are one
// line, name the offending token (quoted, cut to about 100 bytes) and do not
// start with "bad request: ", which the daemon adds.
func ParseRequest(line string) (Request, error) {
	verb, args, hasArgs := strings.Cut(line, " ")
	switch verb {
	case VerbStatus:
		if hasArgs {
			return Request{}, fmt.Errorf("STATUS takes no arguments, got %s", quote(args))
		}
		return Request{Verb: VerbStatus}, nil
	case VerbPush:
		if !hasArgs {
			return Request{}, errors.New("PUSH needs at least one store path")
		}
		paths := strings.SplitN(args, " ", MaxPaths+1)
		if len(paths) > MaxPaths {
			return Request{}, fmt.Errorf("too many paths: more than %d in one PUSH", MaxPaths)
		}
		for _, p := range paths {
			if err := checkPath(p); err != nil {
				return Request{}, err
			}
		}
		return Request{Verb: VerbPush, Paths: paths}, nil
	}
	return Request{}, fmt.Errorf("unknown verb %s (want PUSH or STATUS)", quote(verb))
}

// checkPath validates one PUSH argument, with an error that quotes a
// bounded part of it.
func checkPath(p string) error {
	if len(p) > maxStorePath {
		return fmt.Errorf("invalid store path %s: %d bytes long, store paths have at most %d", quote(p), len(p), maxStorePath)
	}
	if _, err := nar.ParseStorePath(p); err != nil {
		msg := err.Error()
		// nar says `store path "<p>": <reason>`; keep the reason only.
		if r, ok := strings.CutPrefix(msg, "store path "+strconv.Quote(p)+": "); ok {
			msg = r
		}
		return fmt.Errorf("invalid store path %s: %s", quote(p), msg)
	}
	return nil
}

// quote quotes s for an error message, cut to about quoteMax bytes. The
// result is one line.
func quote(s string) string {
	if len(s) <= quoteMax {
		return strconv.Quote(s)
	}
	cut := quoteMax
	for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// oneLine makes msg safe to send after "ERR ": one line, bounded.
func oneLine(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	msg = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxMessage {
		cut := maxMessage
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

// Handler is what the daemon provides to Serve.
type Handler interface {
	// Enqueue queues valid store paths. It returns only once they are
	// durable on disk; added is how many were not queued already. Serve
	// passes source "socket".
	Enqueue(ctx context.Context, paths []string, source string) (added int, err error)
	// StatusJSON returns the daemon's status as JSON.
	StatusJSON(ctx context.Context) ([]byte, error)
}

// Serve accepts connections on ln and answers the request of each. When
// ctx ends it closes ln and the open connections, waits for their
// goroutines and returns nil. It returns an error, having closed ln, when
// the listener fails. A nil log discards.
//
// A connection has requestDeadline from its accept to send its request
// line, and is closed without a reply if it has not. Root's and the
// daemon's user's connections (privileged: the hook, push --via-daemon)
// are limited to maxOpen at once, with at most maxHandling requests in the
// Handler; other peers (a --status-group) get maxStatusConns connections
// of their own and "ERR busy: ..." beyond that, so that they can never
// take a slot a hook needs.
func Serve(ctx context.Context, ln net.Listener, h Handler, log *slog.Logger) error {
	return serve(ctx, ln, h, log, defaultOptions())
}

// options are Serve's limits; tests change them.
type options struct {
	maxLine         int           // MaxLine
	requestDeadline time.Duration // requestDeadline
	maxOpen         int           // privileged connections open at once
	maxHandling     int           // privileged requests in the Handler at once
	maxStatusConns  int           // other peers' connections open at once
	// privileged says whether the peer of conn is root or the daemon's
	// user (mayPush). Tests run as one user and decide it themselves.
	privileged func(conn net.Conn) bool
}

func defaultOptions() options {
	return options{
		maxLine:         MaxLine,
		requestDeadline: requestDeadline,
		maxOpen:         maxOpen,
		maxHandling:     maxHandling,
		maxStatusConns:  maxStatusConns,
		privileged:      mayPush,
	}
}

// server is one Serve's state: its limits as semaphores.
type server struct {
	h   Handler
	log *slog.Logger
	opt options
	// open holds a slot per privileged connection, from accept to close;
	// status one per other connection.
	open, status chan struct{}
	// handling holds a slot per privileged request in the Handler: taken
	// only once the line is read, so idle clients never hold one.
	handling chan struct{}
	// Refusals since the last log line about them (accept loop only).
	refused       int
	refusedLogged time.Time
}

func newServer(h Handler, log *slog.Logger, opt options) *server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opt.privileged == nil {
		opt.privileged = mayPush
	}
	return &server{
		h: h, log: log, opt: opt,
		open:     make(chan struct{}, opt.maxOpen),
		status:   make(chan struct{}, opt.maxStatusConns),
		handling: make(chan struct{}, opt.maxHandling),
	}
}

func serve(ctx context.Context, ln net.Listener, h Handler, log *slog.Logger, opt options) error {
	s := newServer(h, log, opt)
	defer ln.Close()
	stop := closeOnDone(ctx, ln)
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	var backoff time.Duration
	for {
		// No slot is taken before Accept: the accept loop must keep
		// draining the backlog, or clients' connect fails (EAGAIN).
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("socket: accept: %w", err)
			}
			// EMFILE, ECONNABORTED and the like: wait and try again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("socket: accept failed; retrying", "err", err, "delay", backoff)
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
		privileged := s.opt.privileged(conn)
		slot := s.open
		if !privileged {
			slot = s.status
			// Status readers never wait for a slot: a flood of them must
			// not keep the accept loop from the hook's connection.
			select {
			case slot <- struct{}{}:
			default:
				s.refuse(conn)
				continue
			}
		} else {
			// Only root or the daemon's user can fill maxOpen, and each
			// idle connection of theirs leaves after requestDeadline.
			select {
			case slot <- struct{}{}:
			case <-ctx.Done():
				conn.Close()
				return nil
			}
		}
		wg.Go(func() {
			defer func() { <-slot }()
			s.serveConn(ctx, conn, privileged)
		})
	}
}

// refuse turns away a status reader over maxStatusConns with one line.
// The connection is new, so the short write does not block; the deadline
// is there in case it would. Under a flood, one log line per
// refuseLogEvery says how many were refused.
func (s *server) refuse(conn net.Conn) {
	defer conn.Close()
	s.refused++
	if now := time.Now(); now.Sub(s.refusedLogged) >= refuseLogEvery {
		s.log.Warn("socket: refusing connections from users other than root and the daemon's user: too many open",
			"max", s.opt.maxStatusConns, "refused", s.refused)
		s.refused, s.refusedLogged = 0, now
	}
	if err := conn.SetWriteDeadline(time.Now().Add(refuseTimeout)); err != nil {
		return
	}
	fmt.Fprintf(conn, "ERR busy: %d connections from users other than root and the daemon's user are open; try again\n", s.opt.maxStatusConns)
}

// serveConn reads one request from conn, answers it and closes conn.
// privileged peers may PUSH, and take a handling slot for their request.
// It gives up when ctx ends.
func (s *server) serveConn(ctx context.Context, conn net.Conn, privileged bool) {
	defer conn.Close()
	stop := closeOnDone(ctx, conn)
	defer stop()
	// One deadline for the whole line, not per read: a client sending a
	// byte a second is closed as soon as a silent one.
	if err := conn.SetReadDeadline(time.Now().Add(s.opt.requestDeadline)); err != nil {
		return
	}
	var reply string
	line, err := readLine(conn, s.opt.maxLine)
	switch {
	case errors.Is(err, errLineTooLong):
		s.log.Warn("socket: request line too long", "max", s.opt.maxLine)
		s.replyAndDrain(ctx, conn, fmt.Sprintf("ERR %srequest line longer than %d bytes", badRequest, s.opt.maxLine))
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Debug("socket: no request line in time; closing", "deadline", s.opt.requestDeadline)
		return
	case err != nil:
		if !errors.Is(err, io.EOF) && ctx.Err() == nil {
			s.log.Debug("socket: no request", "err", err)
		}
		return
	}
	if privileged {
		select {
		case s.handling <- struct{}{}:
		case <-ctx.Done():
			return
		}
		reply = handle(ctx, string(line), s.h, s.log, true)
		<-s.handling // not held while the client reads its reply
	} else {
		// Bounded by maxStatusConns already.
		reply = handle(ctx, string(line), s.h, s.log, false)
	}
	s.write(ctx, conn, reply)
}

// write sends the reply line, giving up after writeTimeout.
func (s *server) write(ctx context.Context, conn net.Conn, reply string) error {
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err := io.WriteString(conn, reply+"\n")
	if err != nil && ctx.Err() == nil {
		s.log.Debug("socket: write reply", "err", err)
	}
	return err
}

// replyAndDrain answers a client that is still sending (an over-long
// line). A client that writes its whole request before reading would see
// its write fail once we close, and give up before reading the reply; so
// after the reply (and EOF: CloseWrite) read and discard what it sends,
// for at most drainTimeout and maxDrain bytes, letting its write finish.
func (s *server) replyAndDrain(ctx context.Context, conn net.Conn, reply string) {
	if s.write(ctx, conn, reply) != nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if err := conn.SetReadDeadline(time.Now().Add(drainTimeout)); err != nil {
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(conn, maxDrain))
	if err != nil || n == maxDrain {
		s.log.Debug("socket: stopped discarding an over-long request", "discarded", n, "err", err)
	}
}

// handle answers one request line.
func handle(ctx context.Context, line string, h Handler, log *slog.Logger, pushOK bool) string {
	req, err := ParseRequest(line)
	if err != nil {
		log.Warn("socket: bad request", "err", err)
		return "ERR " + oneLine(badRequest+err.Error())
	}
	if req.Verb == VerbStatus {
		js, err := h.StatusJSON(ctx)
		if err != nil {
			log.Warn("socket: status", "err", err)
			return "ERR " + oneLine("status: "+err.Error())
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, js); err != nil {
			log.Error("socket: status handler returned invalid JSON", "err", err)
			return "ERR status: invalid JSON from the daemon"
		}
		return "OK " + buf.String()
	}
	if !pushOK {
		// The socket may be open to a status group (--status-group):
		// queueing stays root's (the post-build-hook's) and the daemon's.
		log.Warn("socket: PUSH refused: the peer is neither root nor the daemon's user")
		return "ERR permission denied: only root or the daemon's user may queue paths"
	}
	added, err := h.Enqueue(ctx, req.Paths, source)
	if err != nil {
		log.Error("socket: enqueue failed", "paths", len(req.Paths), "err", err)
		return "ERR " + oneLine("enqueue: "+err.Error())
	}
	if log.Enabled(ctx, slog.LevelDebug) {
		for _, p := range req.Paths {
			log.Debug("socket: queued", "STORE_PATH", p)
		}
	}
	return "OK " + strconv.Itoa(added)
}

// mayPush reports whether the peer of conn may queue paths: root, or the
// user the daemon runs as. A peer whose credentials cannot be read (not
// a Unix socket: tests' pipes) is allowed; file permissions guard those.
func mayPush(conn net.Conn) bool {
	uid, ok := peerUID(conn)
	return !ok || uid == 0 || uid == os.Geteuid()
}

// readLine reads a "\n"-terminated line from r and returns it without the
// "\n", reading at most max+1 bytes. A longer line gives errLineTooLong; a
// line cut short by the end of r gives io.EOF (or the read error).
func readLine(r io.Reader, max int) ([]byte, error) {
	line, err := bufio.NewReader(io.LimitReader(r, int64(max)+1)).ReadBytes('\n')
	switch {
	case err == nil:
		return line[:len(line)-1], nil
	case len(line) > max:
		return nil, errLineTooLong
	}
	return nil, err
}

// closeOnDone closes c when ctx ends. The returned stop function cancels
// that and, if the close already started, waits for it, so no goroutine is
// left behind.
func closeOnDone(ctx context.Context, c io.Closer) (stop func()) {
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

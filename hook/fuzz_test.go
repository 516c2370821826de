package hook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nixpushd/nixpushd/nar"
)

// fuzzSeeds are inputs for both fuzz targets: each is what a client might
// send on one connection (FuzzParseRequest parses it up to its first "\n").
func fuzzSeeds() []string {
	p1, p2 := testPath(1, "hello-2.12.1"), testPath(2, "hello.drv")
	return []string{
		"STATUS\n",
		"STATUS\r\n",
		"PUSH " + p1 + "\n",
		"PUSH " + p1 + " " + p2 + "\nSTATUS\n",
		"PUSH  " + p1 + "   " + p2 + "  \n",
		"PUSH " + testPath(3, "fail") + "\n",
		"\n\n\n",
		"status\nPING\nPUSH\n",
		"PUSH /nix/store/../etc/passwd\n",
		"PUSH /nix/store/" + testHash + "-x/..\n",
		"PUSH nix/store/" + testHash + "-x\n",
		"PUSH /tmp/x\n",
		"PUSH\t" + p1 + "\n",
		"PUSH " + p1 + "/bin/sh\n",
		"PUSH " + p1 + "\x00\n",
		"\xff\xfe\nSTATUS\n",
		"STATUS\rSTATUS\n",
		"STATUS", // unterminated
		"PUSH " + p1,
	}
}

// firstLine is s up to its first "\n".
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(firstLine(s))
	}
	f.Fuzz(func(t *testing.T, line string) {
		req, err := ParseRequest(line)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n\x00") || !utf8.ValidString(msg) || len(msg) > 1000 {
				t.Fatalf("error is not one short line of text: %q", msg)
			}
			return
		}
		switch req.Verb {
		case VerbStatus:
			if req.Paths != nil {
				t.Fatalf("%s with paths %q", req.Verb, req.Paths)
			}
		case VerbPush:
			if len(req.Paths) == 0 || len(req.Paths) > MaxPaths {
				t.Fatalf("PUSH with %d paths", len(req.Paths))
			}
			for _, p := range req.Paths {
				sp, err := nar.ParseStorePath(p)
				if err != nil {
					t.Fatalf("accepted invalid path %q: %v", p, err)
				}
				if sp.String() != p {
					t.Fatalf("accepted non-canonical path %q", p)
				}
			}
		default:
			t.Fatalf("accepted verb %q", req.Verb)
		}
		// A request has one spelling: what was accepted is it.
		if s := req.String(); s != line {
			t.Fatalf("accepted %q, which renders as %q", line, s)
		}
	})
}

// fuzzHandler checks what reaches the daemon. A PUSH whose first path is
// named "fail" gets an Enqueue error.
type fuzzHandler struct {
	t     *testing.T
	mu    sync.Mutex
	calls int
}

func (h *fuzzHandler) Enqueue(_ context.Context, paths []string, source string) (int, error) {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	if source != "socket" {
		h.t.Errorf("source %q", source)
	}
	if len(paths) == 0 || len(paths) > MaxPaths {
		h.t.Errorf("Enqueue with %d paths", len(paths))
	}
	for _, p := range paths {
		if _, err := nar.ParseStorePath(p); err != nil {
			h.t.Errorf("handler got invalid path %q: %v", p, err)
		}
	}
	if strings.HasSuffix(paths[0], "-fail") {
		return 0, errors.New("injected\nfailure")
	}
	return len(paths), nil
}

func (h *fuzzHandler) StatusJSON(context.Context) ([]byte, error) {
	return []byte("{\"a\": [1, 2],\n \"b\": \"x\\ny\"}\n"), nil
}

// socketPair returns two connected Unix stream sockets.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1]
}

// expectedReply models serveConn: the reply to the first line of data, if
// there is one ("" and false for a first line without "\n", which is not
// answered), or the too-long reply if the first line is longer than maxLine.
func expectedReply(data []byte, maxLine int) (string, bool) {
	tooLong := "ERR bad request: request line longer than " + strconv.Itoa(maxLine) + " bytes"
	i := bytes.IndexByte(data, '\n')
	switch {
	case i < 0 && len(data) > maxLine, i > maxLine:
		return tooLong, true
	case i < 0:
		return "", false
	}
	req, err := ParseRequest(string(data[:i]))
	switch {
	case err != nil:
		return "ERR bad request: " + err.Error(), true
	case req.Verb == VerbStatus:
		return `OK {"a":[1,2],"b":"x\ny"}`, true
	case strings.HasSuffix(req.Paths[0], "-fail"):
		return "ERR enqueue: injected failure", true
	}
	return "OK " + strconv.Itoa(len(req.Paths)), true
}

// fuzzMaxLine is the line limit FuzzServe serves with.
const fuzzMaxLine = 300

// FuzzServe sends arbitrary bytes on a connection and checks the one reply
// (or none) against expectedReply.
func FuzzServe(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	// The line limit is fuzzMaxLine here, so that short inputs reach it;
	// TestServeLineTooLong covers the real one.
	f.Add([]byte("STATUS " + strings.Repeat("x", fuzzMaxLine-7) + "\nSTATUS\n"))
	f.Add([]byte("STATUS " + strings.Repeat("x", fuzzMaxLine-6) + "\nSTATUS\n"))
	f.Add([]byte(strings.Repeat("y", fuzzMaxLine)))
	f.Add([]byte(strings.Repeat("y", fuzzMaxLine+1)))
	f.Add([]byte(strings.Repeat("\n", 1000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, cli := socketPair(t)
		defer cli.Close()
		h := &fuzzHandler{t: t}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		opt := defaultOptions()
		opt.maxLine = fuzzMaxLine
		s := newServer(h, slog.New(slog.DiscardHandler), opt)
		served := make(chan struct{})
		go func() {
			defer close(served)
			// The peer is this process: root or the daemon's user.
			s.serveConn(ctx, srv, s.opt.privileged(srv))
		}()
		cli.SetDeadline(time.Now().Add(20 * time.Second))
		var wg sync.WaitGroup
		wg.Go(func() {
			cli.Write(data) // fails once the server hangs up
			cli.CloseWrite()
		})
		out, err := io.ReadAll(cli)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the reply: %v", err)
		}
		wg.Wait()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("serveConn did not return after EOF")
		}

		want, ok := expectedReply(data, fuzzMaxLine)
		if !ok {
			if len(out) > 0 {
				t.Fatalf("input %.300q without a complete line got a reply %.300q", data, out)
			}
			if h.calls > 0 {
				t.Fatal("an incomplete request reached the handler")
			}
			return
		}
		got, rest, found := strings.Cut(string(out), "\n")
		if !found || rest != "" {
			t.Fatalf("want one reply line, got %.300q", out)
		}
		if got != want {
			t.Fatalf("input %.300q: reply %.200q, want %.200q", data, got, want)
		}
		if !strings.HasPrefix(got, "OK ") && !strings.HasPrefix(got, "ERR ") {
			t.Fatalf("reply %q", got)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("reply is not UTF-8: %q", got)
		}
	})
}

package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/nar"
)

func protoFuzzSeeds() []string {
	p1, p2 := protoTestPath(1, "hello-2.12.1"), protoTestPath(2, "hello.drv")
	return []string{
		"PING\n",
		"PING\r\n",
		"STATUS\n",
		"PUSH " + p1 + "\n",
		"PUSH " + p1 + " " + p2 + "\r\nPING\nSTATUS\n",
		"PUSH  " + p1 + "   " + p2 + "  \n",
		"PUSH " + protoTestPath(3, "fail") + "\n",
		"\n\n\n",
		"ping\nPING pong\nPUSH\n",
		"PUSH /nix/store/../etc/passwd\nPING\n",
		"PUSH /nix/store/" + protoTestHash + "-x/..\n",
		"PUSH nix/store/" + protoTestHash + "-x\n",
		"PUSH /tmp/x\n",
		"PUSH\t" + p1 + "\n",
		"PUSH " + p1 + "/bin/sh\n",
		"PUSH " + p1 + "\x00\nPING\n",
		"\xff\xfe\nPING\n",
		"PING\rPING\n",
		"PING", // unterminated
		"PUSH " + p1,
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range protoFuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n\x00") || !utf8ValidString(msg) || len(msg) > 1000 {
				t.Fatalf("error is not one short line of text: %q", msg)
			}
			return
		}
		switch req.Verb {
		case VerbPing, VerbStatus:
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
		s := req.String()
		again, err := ParseRequest([]byte(s))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", s, err)
		}
		if again.Verb != req.Verb || !slices.Equal(again.Paths, req.Paths) || again.String() != s {
			t.Fatalf("round trip: %+v -> %q -> %+v", req, s, again)
		}
		// Every accepted line is the canonical one up to spaces and the terminator.
		text := string(line)
		if rest, ok := strings.CutSuffix(text, "\n"); ok {
			text = strings.TrimSuffix(rest, "\r")
		}
		norm := strings.Join(strings.Fields(text), " ")
		if norm != s {
			t.Fatalf("accepted %q, renders as %q", line, s)
		}
	})
}

func utf8ValidString(s string) bool { return strings.ToValidUTF8(s, "") == s }

// protoFuzzHandler checks what reaches the daemon. A PUSH whose first
// path is named "fail" gets an Enqueue error.
type protoFuzzHandler struct {
	t     *testing.T
	mu    sync.Mutex
	calls int
}

func (h *protoFuzzHandler) Enqueue(_ context.Context, paths []string, source string) (int, error) {
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

func (h *protoFuzzHandler) StatusJSON(context.Context) ([]byte, error) {
	return []byte("{\"a\": [1, 2],\n \"b\": \"x\\ny\"}\n"), nil
}

// protoSocketPair returns two connected Unix stream sockets.
func protoSocketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
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

// protoExpectedReplies models ServeConn: the reply for each complete line
// up to the first one that is too long (which gets the too-long reply and
// ends the connection).
func protoExpectedReplies(data []byte, maxLine int) []string {
	var want []string
	pieces := bytes.Split(data, []byte("\n"))
	tooLong := "ERR line too long (max " + strconv.Itoa(maxLine) + " bytes)"
	for i, line := range pieces {
		if i == len(pieces)-1 { // unterminated: discarded, unless too long
			if len(line) > maxLine+1 {
				want = append(want, tooLong)
			}
			break
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > maxLine {
			want = append(want, tooLong)
			break
		}
		req, err := ParseRequest(line)
		switch {
		case err != nil:
			want = append(want, "ERR bad request: "+err.Error())
		case req.Verb == VerbPing:
			want = append(want, "OK pong")
		case req.Verb == VerbStatus:
			want = append(want, `OK {"a":[1,2],"b":"x\ny"}`)
		case strings.HasSuffix(req.Paths[0], "-fail"):
			want = append(want, "ERR enqueue: injected failure")
		default:
			want = append(want, "OK "+strconv.Itoa(len(req.Paths)))
		}
	}
	return want
}

// protoFuzzMaxLine is the line limit FuzzServeConn serves with.
const protoFuzzMaxLine = 300

func FuzzServeConn(f *testing.F) {
	for _, s := range protoFuzzSeeds() {
		f.Add([]byte(s))
	}
	// The line limit is protoFuzzMaxLine here, so that short inputs
	// reach it; TestServeConnLineTooLong covers the real one.
	f.Add([]byte("PING " + strings.Repeat("x", protoFuzzMaxLine-5) + "\r\nPING\n"))
	f.Add([]byte("PING " + strings.Repeat("x", protoFuzzMaxLine-4) + "\nPING\n"))
	f.Add([]byte(strings.Repeat("y", protoFuzzMaxLine+2)))
	f.Add([]byte(strings.Repeat("\n", 1000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, cli := protoSocketPair(t)
		defer cli.Close()
		h := &protoFuzzHandler{t: t}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		served := make(chan struct{})
		go func() {
			defer close(served)
			protoServeConn(ctx, srv, h, nil, protoFuzzMaxLine)
		}()
		cli.SetDeadline(time.Now().Add(20 * time.Second))
		var wg sync.WaitGroup
		wg.Go(func() {
			cli.Write(data) // fails once the server hangs up on a long line
			cli.CloseWrite()
		})
		out, err := io.ReadAll(cli)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading replies: %v", err)
		}
		wg.Wait()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return after EOF")
		}

		if len(out) > 0 && out[len(out)-1] != '\n' {
			t.Fatalf("last reply not terminated: %q", out)
		}
		got := strings.Split(string(out), "\n")
		got = got[:len(got)-1]
		want := protoExpectedReplies(data, protoFuzzMaxLine)
		if len(got) != len(want) {
			t.Fatalf("%d replies for %d expected\ninput %.300q\ngot %.300q", len(got), len(want), data, got)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("reply %d = %.200q, want %.200q", i, got[i], want[i])
			}
			if !strings.HasPrefix(got[i], "OK ") && !strings.HasPrefix(got[i], "ERR ") {
				t.Fatalf("reply %q", got[i])
			}
		}
	})
}

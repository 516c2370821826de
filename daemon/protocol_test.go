package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/nar"
)

const protoTestHash = "0c8jh4lmcv1g5wzw1xzyfwnhsp6rz2qq"

// protoTestPath returns a distinct valid store path for each i.
func protoTestPath(i int, name string) string {
	const digits = "0123456789abcdfghijklmnpqrsvwxyz"
	h := []byte(protoTestHash)
	for k := len(h) - 1; k >= len(h)-6; k-- {
		h[k] = digits[i%32]
		i /= 32
	}
	return nar.StoreDir + "/" + string(h) + "-" + name
}

// protoFakeHandler is an in-memory Handler.
type protoFakeHandler struct {
	mu      sync.Mutex
	queued  map[string]bool
	order   []string
	calls   int
	sources []string
	err     error           // Enqueue fails with it when set
	status  []byte          // StatusJSON's result
	block   <-chan struct{} // when set, Enqueue waits for it (or ctx)
}

func (h *protoFakeHandler) Enqueue(ctx context.Context, paths []string, source string) (int, error) {
	if h.block != nil {
		select {
		case <-h.block:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	h.sources = append(h.sources, source)
	if h.err != nil {
		return 0, h.err
	}
	if h.queued == nil {
		h.queued = make(map[string]bool)
	}
	added := 0
	for _, p := range paths {
		if !h.queued[p] {
			h.queued[p] = true
			h.order = append(h.order, p)
			added++
		}
	}
	return added, nil
}

func (h *protoFakeHandler) StatusJSON(context.Context) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.status == nil {
		return []byte(fmt.Sprintf("{\n  \"queued\": %d\n}\n", len(h.order))), nil
	}
	return h.status, nil
}

func (h *protoFakeHandler) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func (h *protoFakeHandler) paths() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.order)
}

func protoTestLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// protoSocketPath returns a socket path in a fresh temporary directory,
// short enough for sun_path.
func protoSocketPath(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "s.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "np")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// protoStartServe runs Serve on a fresh socket. stop cancels it and
// returns how long Serve took to return.
func protoStartServe(t *testing.T, h Handler, maxConns int) (socket string, stop func() time.Duration) {
	t.Helper()
	socket = protoSocketPath(t)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, maxConns, protoTestLog(t)) }()
	stopped := false
	var took time.Duration
	stop = func() time.Duration {
		if stopped {
			return took
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			took = time.Since(start)
			if err != nil {
				t.Errorf("Serve returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return within 10s of cancel")
		}
		return took
	}
	t.Cleanup(func() { stop() })
	return socket, stop
}

type protoClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func protoDial(t *testing.T, socket string) *protoClient {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &protoClient{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *protoClient) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply line, failing the test after 10s.
func (c *protoClient) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

func (c *protoClient) do(line string) string {
	c.t.Helper()
	c.send(line + "\n")
	return c.reply()
}

func TestParseRequestGood(t *testing.T) {
	p1, p2 := protoTestPath(1, "hello-2.12.1"), protoTestPath(2, "hello.drv")
	max := make([]string, MaxPaths)
	for i := range max {
		max[i] = protoTestPath(i, "p")
	}
	tests := []struct {
		in   string
		want ParsedRequest
	}{
		{"PING", ParsedRequest{Verb: "PING"}},
		{"PING\n", ParsedRequest{Verb: "PING"}},
		{"PING\r\n", ParsedRequest{Verb: "PING"}},
		{"STATUS", ParsedRequest{Verb: "STATUS"}},
		{"STATUS  ", ParsedRequest{Verb: "STATUS"}},
		{"PUSH " + p1, ParsedRequest{Verb: "PUSH", Paths: []string{p1}}},
		{"PUSH " + p1 + " " + p2 + "\r\n", ParsedRequest{Verb: "PUSH", Paths: []string{p1, p2}}},
		// Runs of spaces are one separator; leading and trailing ones are ignored.
		{"  PUSH   " + p1 + "  " + p2 + "   ", ParsedRequest{Verb: "PUSH", Paths: []string{p1, p2}}},
		// Duplicates are the handler's business.
		{"PUSH " + p1 + " " + p1, ParsedRequest{Verb: "PUSH", Paths: []string{p1, p1}}},
		{"PUSH " + strings.Join(max, " "), ParsedRequest{Verb: "PUSH", Paths: max}},
		{"PUSH " + nar.StoreDir + "/" + protoTestHash + "-" + strings.Repeat("x", nar.MaxNameLen),
			ParsedRequest{Verb: "PUSH", Paths: []string{nar.StoreDir + "/" + protoTestHash + "-" + strings.Repeat("x", nar.MaxNameLen)}}},
	}
	for _, tc := range tests {
		got, err := ParseRequest([]byte(tc.in))
		if err != nil {
			t.Errorf("ParseRequest(%s): %v", protoQuote(tc.in), err)
			continue
		}
		if got.Verb != tc.want.Verb || !slices.Equal(got.Paths, tc.want.Paths) {
			t.Errorf("ParseRequest(%s) = %+v, want %+v", protoQuote(tc.in), got, tc.want)
		}
		again, err := ParseRequest([]byte(got.String()))
		if err != nil || again.Verb != got.Verb || !slices.Equal(again.Paths, got.Paths) {
			t.Errorf("re-parse of %s: %+v, %v", protoQuote(got.String()), again, err)
		}
	}
}

func TestParseRequestBad(t *testing.T) {
	p := protoTestPath(1, "hello")
	tooMany := make([]string, MaxPaths+1)
	for i := range tooMany {
		tooMany[i] = protoTestPath(i, "p")
	}
	huge := "PUSH " + strings.Repeat("a ", 300000)
	tests := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", "", []string{"empty request"}},
		{"newline only", "\n", []string{"empty request"}},
		{"spaces only", "   ", []string{"empty request"}},
		{"unknown verb", "FROB x", []string{"unknown verb", `"FROB"`}},
		{"lower case", "ping", []string{"unknown verb", `"ping"`, "upper case"}},
		{"mixed case", "Push " + p, []string{"unknown verb", `"Push"`, "upper case"}},
		{"tab separator", "PUSH\t" + p, []string{"unknown verb", `"PUSH\t/nix/store/`, "spaces"}},
		{"tab between paths", "PUSH " + p + "\t" + protoTestPath(2, "x"), []string{"invalid store path", `\t`}},
		{"NUL", "PUSH " + p + "\x00", []string{"NUL byte at offset"}},
		{"NUL in verb", "PI\x00NG", []string{"NUL byte at offset 2"}},
		{"invalid UTF-8", "PUSH /nix/store/\xff\xfe", []string{"invalid UTF-8 at offset 16"}},
		{"CR inside", "PING\rPING", []string{"unknown verb"}},
		{"double CR", "PING\r\r\n", []string{"unknown verb"}},
		{"args to PING", "PING pong", []string{"PING takes no arguments", `"pong"`}},
		{"args to STATUS", "STATUS " + p, []string{"STATUS takes no arguments"}},
		{"PUSH nothing", "PUSH", []string{"at least one store path"}},
		{"PUSH spaces", "PUSH   ", []string{"at least one store path"}},
		{"dot-dot escape", "PUSH /nix/store/../etc/passwd", []string{"invalid store path", `"/nix/store/../etc/passwd"`}},
		{"dot-dot after path", "PUSH /nix/store/" + protoTestHash + "-x/..", []string{"invalid store path", `"/nix/store/` + protoTestHash + `-x/.."`}},
		{"subpath", "PUSH " + p + "/bin/hello", []string{"invalid store path", "inside a store path"}},
		{"trailing slash", "PUSH " + p + "/", []string{"invalid store path", "trailing slash"}},
		{"relative", "PUSH nix/store/" + protoTestHash + "-x", []string{"invalid store path", `"nix/store/`}},
		{"bare base name", "PUSH " + protoTestHash + "-x", []string{"invalid store path"}},
		{"other dir", "PUSH /tmp/x", []string{"invalid store path", `"/tmp/x"`, "not in /nix/store/"}},
		{"store dir itself", "PUSH /nix/store", []string{"invalid store path"}},
		{"bad hash char", "PUSH /nix/store/" + strings.Repeat("e", 32) + "-x", []string{"invalid store path", "hash part"}},
		{"short hash", "PUSH /nix/store/abc-x", []string{"invalid store path", "too short"}},
		{"bad name char", "PUSH /nix/store/" + protoTestHash + "-a b", []string{"at least one"}}, // space splits; see next
		{"bad name char 2", "PUSH /nix/store/" + protoTestHash + "-a$b", []string{"invalid store path", "illegal character"}},
		{"dot-dash name", "PUSH /nix/store/" + protoTestHash + "-.-x", []string{"invalid store path"}},
		{"name too long", "PUSH /nix/store/" + protoTestHash + "-" + strings.Repeat("x", nar.MaxNameLen+1), []string{"invalid store path", "bytes long"}},
		{"valid then invalid", "PUSH " + p + " /tmp/x", []string{"invalid store path", `"/tmp/x"`}},
		{"too many", "PUSH " + strings.Join(tooMany, " "), []string{"too many paths", "4096"}},
		{"huge number of tokens", huge, []string{"too many paths"}},
		{"over MaxLine", "PUSH " + strings.Repeat("x", MaxLine), []string{"line too long"}},
		{"long garbage token", "PUSH /nix/store/" + strings.Repeat("z", 5000), []string{"invalid store path", "... (5011 bytes)"}},
	}
	for _, tc := range tests {
		got, err := ParseRequest([]byte(tc.in))
		if tc.name == "bad name char" {
			// "-a b" splits into "...-a" (valid) and "b" (invalid).
			if err == nil || !strings.Contains(err.Error(), `"b"`) {
				t.Errorf("%s: got %+v, %v", tc.name, got, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: ParseRequest(%s) = %+v, want an error", tc.name, protoQuote(tc.in), got)
			continue
		}
		msg := err.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not contain %q", tc.name, msg, w)
			}
		}
		if strings.ContainsAny(msg, "\r\n\x00") || len(msg) > 600 {
			t.Errorf("%s: error is not one short line: %q", tc.name, msg)
		}
	}
}

func TestProtoQuote(t *testing.T) {
	if got := protoQuote("abc"); got != `"abc"` {
		t.Errorf("got %s", got)
	}
	long := strings.Repeat("é", 100) // 200 bytes; a cut must not split a rune
	got := protoQuote(long)
	if !strings.HasPrefix(got, `"`+strings.Repeat("é", 50)+`"...`) || !strings.HasSuffix(got, "(200 bytes)") {
		t.Errorf("got %s", got)
	}
}

func TestServeConnRequests(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 4)
	c := protoDial(t, socket)
	p1, p2 := protoTestPath(1, "a"), protoTestPath(2, "b")

	if r := c.do("PING"); r != "OK pong" {
		t.Errorf("PING: %q", r)
	}
	if r := c.do("PUSH " + p1 + " " + p2); r != "OK 2" {
		t.Errorf("PUSH: %q", r)
	}
	if r := c.do("PUSH " + p2); r != "OK 0" {
		t.Errorf("PUSH again: %q", r)
	}
	if r := c.do("STATUS"); r != `OK {"queued":2}` {
		t.Errorf("STATUS: %q", r)
	}
	// Pipelined requests, CRLF, replies in order.
	c.send("PING\r\nSTATUS\nPUSH " + protoTestPath(3, "c") + "\r\n")
	for _, want := range []string{"OK pong", `OK {"queued":2}`, "OK 1"} {
		if r := c.reply(); r != want {
			t.Errorf("pipelined: got %q, want %q", r, want)
		}
	}
	if got := h.paths(); !slices.Equal(got, []string{p1, p2, protoTestPath(3, "c")}) {
		t.Errorf("queued %q", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.sources {
		if s != "socket" {
			t.Errorf("source %q", s)
		}
	}
}

func TestServeConnGarbageKeepsServing(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 4)
	c := protoDial(t, socket)
	garbage := []string{
		"",
		"   ",
		"HELLO",
		"ping",
		"PUSH",
		"PUSH /nix/store/../etc/passwd",
		"PUSH /nix/store/" + protoTestHash + "-x/..",
		"PUSH " + protoTestPath(1, "ok") + " /tmp/x",
		"PUSH\t" + protoTestPath(1, "ok"),
		"PUSH \x00",
		"\xff\xfe\xfd",
		"PING extra",
		strings.Repeat("x", 100000),
	}
	for _, g := range garbage {
		r := c.do(g)
		if !strings.HasPrefix(r, "ERR bad request: ") {
			t.Errorf("%s: reply %q", protoQuote(g), r)
		}
		if len(r) > 1000 {
			t.Errorf("%s: reply is %d bytes long", protoQuote(g), len(r))
		}
		if r := c.do("PING"); r != "OK pong" {
			t.Fatalf("PING after %s: %q", protoQuote(g), r)
		}
	}
	if h.callCount() != 0 {
		t.Errorf("handler called %d times for garbage (queued %q)", h.callCount(), h.paths())
	}
}

func TestServeConnLineTooLong(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 4)

	// Exactly MaxLine bytes (plus CRLF) is still a line: it gets a
	// normal ERR and the connection stays.
	c := protoDial(t, socket)
	okLen := "PING " + strings.Repeat("y", MaxLine-5)
	if r := c.do(okLen + "\r"); !strings.HasPrefix(r, "ERR bad request: PING takes no arguments") {
		t.Errorf("MaxLine-byte line: %.100q", r)
	}
	if r := c.do("PING"); r != "OK pong" {
		t.Errorf("after MaxLine-byte line: %q", r)
	}

	// One more byte, and the server cannot resync: ERR and close. The
	// client keeps writing; the server must not read it all.
	c2 := protoDial(t, socket)
	go func() {
		c2.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c2.conn, okLen+"y\nPING\n")
	}()
	if r := c2.reply(); r != fmt.Sprintf("ERR line too long (max %d bytes)", MaxLine) {
		t.Errorf("oversized line: %q", r)
	}
	c2.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := c2.br.ReadString('\n'); err == nil {
		t.Errorf("connection still open after oversized line, got %q", rest)
	}

	// An endless line without "\n" is cut off too.
	c3 := protoDial(t, socket)
	go func() {
		c3.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		chunk := []byte(strings.Repeat("z", 64<<10))
		for {
			if _, err := c3.conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	if r := c3.reply(); !strings.HasPrefix(r, "ERR line too long") {
		t.Errorf("endless line: %q", r)
	}
	if h.callCount() != 0 {
		t.Errorf("handler called")
	}
}

func TestServeConnHandlerErrors(t *testing.T) {
	h := &protoFakeHandler{err: errors.New("disk full\nsecond line")}
	socket, _ := protoStartServe(t, h, 4)
	c := protoDial(t, socket)
	r := c.do("PUSH " + protoTestPath(1, "a"))
	if r != "ERR enqueue: disk full second line" {
		t.Errorf("enqueue error: %q", r)
	}
	if r := c.do("PING"); r != "OK pong" {
		t.Errorf("PING after enqueue error: %q", r)
	}
	h.mu.Lock()
	h.status = []byte("{not json")
	h.mu.Unlock()
	if r := c.do("STATUS"); !strings.HasPrefix(r, "ERR status:") {
		t.Errorf("bad status JSON: %q", r)
	}
}

func TestServeConnUnterminatedLine(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 4)
	c := protoDial(t, socket)
	c.send("PING\nPUSH " + protoTestPath(1, "a"))
	c.conn.(*net.UnixConn).CloseWrite()
	if r := c.reply(); r != "OK pong" {
		t.Errorf("got %q", r)
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := c.br.ReadString('\n'); err != io.EOF || rest != "" {
		t.Errorf("unterminated line answered: %q, %v", rest, err)
	}
	if h.callCount() != 0 {
		t.Errorf("unterminated PUSH was enqueued")
	}
}

func TestServeConnIdleTimeout(t *testing.T) {
	old := protoIdleTimeout
	protoIdleTimeout = 100 * time.Millisecond
	defer func() { protoIdleTimeout = old }()

	a, b := net.Pipe()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ServeConn(context.Background(), a, &protoFakeHandler{}, protoTestLog(t))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not give up on an idle client")
	}
}

func TestServeConcurrentClients(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 8)
	const clients, each = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			conn, err := net.Dial("unix", socket)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(conn)
			for j := range each {
				p := protoTestPath(1000+i*each+j, "c")
				if _, err := io.WriteString(conn, "PUSH "+p+"\n"); err != nil {
					errs <- err
					return
				}
				r, err := br.ReadString('\n')
				if err != nil || r != "OK 1\n" {
					errs <- fmt.Errorf("client %d: %q, %v", i, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(h.paths()); n != clients*each {
		t.Errorf("queued %d paths, want %d", n, clients*each)
	}
}

func TestServeBoundsConnections(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 1)
	a := protoDial(t, socket)
	if r := a.do("PING"); r != "OK pong" {
		t.Fatalf("a: %q", r)
	}
	b := protoDial(t, socket) // the kernel accepts it into the backlog
	b.send("PING\n")
	b.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := b.br.ReadString('\n'); err == nil {
		t.Fatalf("second client served while the first holds the only slot: %q", r)
	}
	a.conn.Close()
	if r := b.reply(); r != "OK pong" {
		t.Errorf("b after a left: %q", r)
	}
}

func TestServeStopsWithIdleAndBusyClients(t *testing.T) {
	before := runtime.NumGoroutine()
	block := make(chan struct{}) // never closed: Enqueue waits for ctx
	h := &protoFakeHandler{block: block}
	socket, stop := protoStartServe(t, h, 4)
	idle := protoDial(t, socket)
	if r := idle.do("PING"); r != "OK pong" {
		t.Fatalf("%q", r)
	}
	busy := protoDial(t, socket)
	busy.send("PUSH " + protoTestPath(1, "a") + "\n")
	half := protoDial(t, socket)
	half.send("PUSH /nix/store/") // mid-line
	time.Sleep(50 * time.Millisecond)

	if took := stop(); took > 2*time.Second {
		t.Errorf("Serve took %v to stop", took)
	}
	// Every connection was closed by the server.
	for name, c := range map[string]*protoClient{"idle": idle, "busy": busy, "half": half} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c.br); err != nil {
			t.Errorf("%s: not closed: %v", name, err)
		}
		c.conn.Close()
	}
	// The listener is closed: nobody can connect.
	if conn, err := net.Dial("unix", socket); err == nil {
		conn.Close()
		t.Error("listener still accepting after Serve returned")
	}
	// No goroutine of Serve is left (allow a moment for the test's own).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestServeListenerFailure(t *testing.T) {
	ln, err := net.Listen("unix", protoSocketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(context.Background(), ln, &protoFakeHandler{}, 1, protoTestLog(t))
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener: %v", err)
	}
}

func TestRequestClient(t *testing.T) {
	h := &protoFakeHandler{}
	socket, _ := protoStartServe(t, h, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if r, err := Request(ctx, socket, "PING"); r != "pong" || err != nil {
		t.Errorf("PING: %q, %v", r, err)
	}
	if r, err := Request(ctx, socket, "PUSH "+protoTestPath(1, "a")); r != "1" || err != nil {
		t.Errorf("PUSH: %q, %v", r, err)
	}
	_, err := Request(ctx, socket, "PUSH /tmp/x")
	var rerr *ReplyError
	if !errors.As(err, &rerr) || !rerr.BadRequest() || !strings.Contains(rerr.Msg, `"/tmp/x"`) {
		t.Errorf("bad PUSH: %v", err)
	}
	if _, err := Request(ctx, socket, "PING\nPING"); err == nil {
		t.Error("a newline in the request was accepted")
	}
	h.mu.Lock()
	h.err = errors.New("queue closed")
	h.mu.Unlock()
	_, err = Request(ctx, socket, "PUSH "+protoTestPath(2, "b"))
	if !errors.As(err, &rerr) || rerr.BadRequest() || rerr.Msg != "enqueue: queue closed" {
		t.Errorf("failing enqueue: %v", err)
	}

	// No daemon.
	if _, err := Request(ctx, filepath.Join(t.TempDir(), "none.sock"), "PING"); err == nil {
		t.Error("no error without a daemon")
	}
}

func TestRequestClientTimeout(t *testing.T) {
	socket := protoSilentServer(t) // accepts and never answers

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Request(ctx, socket, "PING")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}

	// Cancellation without a deadline also ends the wait.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	if _, err := Request(ctx2, socket, "PING"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
}

// protoSilentServer listens on a fresh socket, accepts connections and
// never answers: the daemon as a client sees it when it hangs. Everything
// is closed and waited for at cleanup.
func protoSilentServer(t *testing.T) string {
	t.Helper()
	socket := protoSocketPath(t)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return socket
}

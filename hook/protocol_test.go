package hook

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
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nixpushd/nixpushd/nar"
)

const testHash = "0c8jh4lmcv1g5wzw1xzyfwnhsp6rz2qq"

// testPath returns a distinct valid store path for each i.
func testPath(i int, name string) string {
	const digits = "0123456789abcdfghijklmnpqrsvwxyz"
	h := []byte(testHash)
	for k := len(h) - 1; k >= len(h)-6; k-- {
		h[k] = digits[i%32]
		i /= 32
	}
	return nar.StoreDir + "/" + string(h) + "-" + name
}

// fakeHandler is an in-memory Handler.
type fakeHandler struct {
	mu      sync.Mutex
	queued  map[string]bool
	order   []string
	calls   int
	sources []string
	err     error           // Enqueue fails with it when set
	status  []byte          // StatusJSON's result
	block   <-chan struct{} // when set, Enqueue waits for it (or ctx)
}

func (h *fakeHandler) Enqueue(ctx context.Context, paths []string, source string) (int, error) {
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

func (h *fakeHandler) StatusJSON(context.Context) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.status == nil {
		return []byte(fmt.Sprintf("{\n  \"queued\": %d\n}\n", len(h.order))), nil
	}
	return h.status, nil
}

func (h *fakeHandler) callCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func (h *fakeHandler) paths() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.order)
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// socketPath returns a socket path in a fresh temporary directory,
// short enough for sun_path.
func socketPath(t testing.TB) string {
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

// startServe runs serve on a fresh socket with the default options but
// maxHandling handling slots. stop cancels it and returns how long serve
// took to return.
func startServe(t *testing.T, h Handler, maxHandling int) (socket string, stop func() time.Duration) {
	t.Helper()
	return startServeWith(t, h, func(o *options) { o.maxHandling = maxHandling })
}

// startServeWith runs serve with the default options as changed by set.
// Peers that bind to a name starting with statusPrefix (dialStatus) count
// as status readers, others as privileged.
func startServeWith(t *testing.T, h Handler, set func(*options)) (socket string, stop func() time.Duration) {
	t.Helper()
	opt := defaultOptions()
	opt.privileged = func(c net.Conn) bool { return !strings.HasPrefix(c.RemoteAddr().String(), statusPrefix) }
	if set != nil {
		set(&opt)
	}
	socket = socketPath(t)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, h, testLog(t), opt) }()
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

type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dial(t *testing.T, socket string) *client {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply line, failing the test after 10s.
func (c *client) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// closed checks that the daemon closed the connection.
func (c *client) closed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := c.br.ReadString('\n'); err == nil || rest != "" {
		c.t.Errorf("connection still open: read %q, %v", rest, err)
	}
}

// ask sends one request on a fresh connection and returns the reply; the
// daemon must close the connection after it.
func ask(t *testing.T, socket, line string) string {
	t.Helper()
	c := dial(t, socket)
	c.send(line + "\n")
	r := c.reply()
	c.closed()
	return r
}

func TestParseRequestGood(t *testing.T) {
	p1, p2 := testPath(1, "hello-2.12.1"), testPath(2, "hello.drv")
	max := make([]string, MaxPaths)
	for i := range max {
		max[i] = testPath(i, "p")
	}
	long := nar.StoreDir + "/" + testHash + "-" + strings.Repeat("x", nar.MaxNameLen)
	tests := []struct {
		in   string
		want Request
	}{
		{"STATUS", Request{Verb: "STATUS"}},
		{"PUSH " + p1, Request{Verb: "PUSH", Paths: []string{p1}}},
		{"PUSH " + p1 + " " + p2, Request{Verb: "PUSH", Paths: []string{p1, p2}}},
		// Duplicates are the handler's business.
		{"PUSH " + p1 + " " + p1, Request{Verb: "PUSH", Paths: []string{p1, p1}}},
		{"PUSH " + strings.Join(max, " "), Request{Verb: "PUSH", Paths: max}},
		{"PUSH " + long, Request{Verb: "PUSH", Paths: []string{long}}},
	}
	for _, tc := range tests {
		got, err := ParseRequest(tc.in)
		if err != nil {
			t.Errorf("ParseRequest(%s): %v", quote(tc.in), err)
			continue
		}
		if got.Verb != tc.want.Verb || !slices.Equal(got.Paths, tc.want.Paths) {
			t.Errorf("ParseRequest(%s) = %+v, want %+v", quote(tc.in), got, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("ParseRequest(%s).String() = %s", quote(tc.in), quote(got.String()))
		}
	}
}

func TestParseRequestBad(t *testing.T) {
	p := testPath(1, "hello")
	tooMany := make([]string, MaxPaths+1)
	for i := range tooMany {
		tooMany[i] = testPath(i, "p")
	}
	tests := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", "", []string{"unknown verb", `""`}},
		{"spaces only", "   ", []string{"unknown verb", `""`}},
		{"unknown verb", "FROB x", []string{"unknown verb", `"FROB"`, "want PUSH or STATUS"}},
		{"PING is gone", "PING", []string{"unknown verb", `"PING"`}},
		{"lower case", "status", []string{"unknown verb", `"status"`}},
		{"mixed case", "Push " + p, []string{"unknown verb", `"Push"`}},
		{"leading space", " STATUS", []string{"unknown verb", `""`}},
		{"tab separator", "PUSH\t" + p, []string{"unknown verb", `"PUSH\t/nix/store/`}},
		{"CR terminator", "STATUS\r", []string{"unknown verb", `"STATUS\r"`}},
		{"CR after a path", "PUSH " + p + "\r", []string{"invalid store path", `\r"`}},
		{"newline inside", "STATUS\nSTATUS", []string{"unknown verb", `"STATUS\nSTATUS"`}},
		{"NUL", "PUSH " + p + "\x00", []string{"invalid store path", `\x00"`}},
		{"invalid UTF-8", "PUSH /nix/store/\xff\xfe", []string{"invalid store path", `\xff\xfe"`}},
		{"args to STATUS", "STATUS " + p, []string{"STATUS takes no arguments", p}},
		{"trailing space after STATUS", "STATUS ", []string{"STATUS takes no arguments", `""`}},
		{"PUSH nothing", "PUSH", []string{"at least one store path"}},
		{"PUSH empty path", "PUSH ", []string{"invalid store path", `""`}},
		{"double space", "PUSH  " + p, []string{"invalid store path", `""`}},
		{"trailing space", "PUSH " + p + " ", []string{"invalid store path", `""`}},
		{"tab between paths", "PUSH " + p + "\t" + testPath(2, "x"), []string{"invalid store path", `\t`}},
		{"dot-dot escape", "PUSH /nix/store/../etc/passwd", []string{"invalid store path", `"/nix/store/../etc/passwd"`}},
		{"dot-dot after path", "PUSH /nix/store/" + testHash + "-x/..", []string{"invalid store path", `"/nix/store/` + testHash + `-x/.."`}},
		{"subpath", "PUSH " + p + "/bin/hello", []string{"invalid store path", "inside a store path"}},
		{"trailing slash", "PUSH " + p + "/", []string{"invalid store path", "trailing slash"}},
		{"relative", "PUSH nix/store/" + testHash + "-x", []string{"invalid store path", `"nix/store/`}},
		{"bare base name", "PUSH " + testHash + "-x", []string{"invalid store path"}},
		{"other dir", "PUSH /tmp/x", []string{"invalid store path", `"/tmp/x"`, "not in /nix/store/"}},
		{"store dir itself", "PUSH /nix/store", []string{"invalid store path"}},
		{"bad hash char", "PUSH /nix/store/" + strings.Repeat("e", 32) + "-x", []string{"invalid store path", "hash part"}},
		{"short hash", "PUSH /nix/store/abc-x", []string{"invalid store path", "too short"}},
		{"bad name char", "PUSH /nix/store/" + testHash + "-a$b", []string{"invalid store path", "illegal character"}},
		{"dot-dash name", "PUSH /nix/store/" + testHash + "-.-x", []string{"invalid store path"}},
		{"name too long", "PUSH /nix/store/" + testHash + "-" + strings.Repeat("x", nar.MaxNameLen+1), []string{"invalid store path", "bytes long"}},
		{"valid then invalid", "PUSH " + p + " /tmp/x", []string{"invalid store path", `"/tmp/x"`}},
		{"too many", "PUSH " + strings.Join(tooMany, " "), []string{"too many paths", "4096"}},
		{"huge number of tokens", "PUSH " + strings.Repeat("a ", 300000), []string{"too many paths"}},
		{"long garbage token", "PUSH /nix/store/" + strings.Repeat("z", 5000), []string{"invalid store path", "... (5011 bytes)"}},
	}
	for _, tc := range tests {
		got, err := ParseRequest(tc.in)
		if err == nil {
			t.Errorf("%s: ParseRequest(%s) = %+v, want an error", tc.name, quote(tc.in), got)
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

func TestQuote(t *testing.T) {
	if got := quote("abc"); got != `"abc"` {
		t.Errorf("got %s", got)
	}
	long := strings.Repeat("é", 100) // 200 bytes; a cut must not split a rune
	got := quote(long)
	if !strings.HasPrefix(got, `"`+strings.Repeat("é", 50)+`"...`) || !strings.HasSuffix(got, "(200 bytes)") {
		t.Errorf("got %s", got)
	}
}

func TestServeRequests(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)
	p1, p2 := testPath(1, "a"), testPath(2, "b")

	if r := ask(t, socket, "PUSH "+p1+" "+p2); r != "OK 2" {
		t.Errorf("PUSH: %q", r)
	}
	if r := ask(t, socket, "PUSH "+p2); r != "OK 0" {
		t.Errorf("PUSH again: %q", r)
	}
	if r := ask(t, socket, "STATUS"); r != `OK {"queued":2}` {
		t.Errorf("STATUS: %q", r)
	}
	// One request per connection: a second line is not answered.
	c := dial(t, socket)
	c.send("STATUS\nPUSH " + testPath(3, "c") + "\n")
	if r := c.reply(); r != `OK {"queued":2}` {
		t.Errorf("first of two lines: %q", r)
	}
	c.closed()
	if got := h.paths(); !slices.Equal(got, []string{p1, p2}) {
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

func TestServeGarbage(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)
	garbage := []string{
		"",
		"   ",
		"HELLO",
		"PING",
		"status",
		"STATUS\r",
		"PUSH",
		"PUSH /nix/store/../etc/passwd",
		"PUSH /nix/store/" + testHash + "-x/..",
		"PUSH " + testPath(1, "ok") + " /tmp/x",
		"PUSH\t" + testPath(1, "ok"),
		"PUSH \x00",
		"\xff\xfe\xfd",
		strings.Repeat("x", 100000),
	}
	for _, g := range garbage {
		r := ask(t, socket, g)
		if !strings.HasPrefix(r, "ERR bad request: ") {
			t.Errorf("%s: reply %q", quote(g), r)
		}
		if len(r) > 1000 || !utf8.ValidString(r) {
			t.Errorf("%s: reply is %d bytes long", quote(g), len(r))
		}
	}
	if r := ask(t, socket, "STATUS"); !strings.HasPrefix(r, "OK ") {
		t.Fatalf("STATUS after garbage: %q", r)
	}
	if h.callCount() != 0 {
		t.Errorf("handler called %d times for garbage (queued %q)", h.callCount(), h.paths())
	}
}

func TestServeLineTooLong(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)

	// Exactly MaxLine bytes is still a request.
	okLen := "STATUS " + strings.Repeat("y", MaxLine-7)
	if r := ask(t, socket, okLen); !strings.HasPrefix(r, "ERR bad request: STATUS takes no arguments") {
		t.Errorf("MaxLine-byte line: %.100q", r)
	}

	// One more byte is too long. The client keeps writing; the daemon
	// must not read it all.
	tooLong := fmt.Sprintf("ERR bad request: request line longer than %d bytes", MaxLine)
	c := dial(t, socket)
	go func() {
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c.conn, okLen+"y\nSTATUS\n")
	}()
	if r := c.reply(); r != tooLong {
		t.Errorf("oversized line: %q", r)
	}
	c.closed()

	// An endless line without "\n" is cut off too.
	c = dial(t, socket)
	go func() {
		c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		chunk := []byte(strings.Repeat("z", 64<<10))
		for {
			if _, err := c.conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	if r := c.reply(); r != tooLong {
		t.Errorf("endless line: %q", r)
	}
	if h.callCount() != 0 {
		t.Errorf("handler called")
	}
}

func TestServeHandlerErrors(t *testing.T) {
	h := &fakeHandler{err: errors.New("disk full\nsecond line")}
	socket, _ := startServe(t, h, 4)
	if r := ask(t, socket, "PUSH "+testPath(1, "a")); r != "ERR enqueue: disk full second line" {
		t.Errorf("enqueue error: %q", r)
	}
	h.mu.Lock()
	h.status = []byte("{not json")
	h.mu.Unlock()
	if r := ask(t, socket, "STATUS"); !strings.HasPrefix(r, "ERR status:") {
		t.Errorf("bad status JSON: %q", r)
	}
}

func TestServeUnterminatedLine(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)
	c := dial(t, socket)
	c.send("PUSH " + testPath(1, "a"))
	c.conn.(*net.UnixConn).CloseWrite()
	c.closed()
	if h.callCount() != 0 {
		t.Errorf("unterminated PUSH was enqueued")
	}
}

func TestServeRequestTimeout(t *testing.T) {
	opt := defaultOptions()
	opt.requestDeadline = 100 * time.Millisecond
	s := newServer(&fakeHandler{}, testLog(t), opt)

	a, b := net.Pipe()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveConn(context.Background(), a, true)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serveConn did not give up on a silent client")
	}
}

func TestServeConcurrentClients(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 8)
	const clients, each = 20, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			for j := range each {
				p := testPath(1000+i*each+j, "c")
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				n, err := Push(ctx, socket, []string{p})
				cancel()
				if err != nil || n != 1 {
					errs <- fmt.Errorf("client %d: %d, %v", i, n, err)
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

// With maxOpen privileged connections open, the next one waits to be
// accepted — but only until the silent one's requestDeadline. (Before
// #24 it waited for as long as the silent client stayed.)
func TestServeBoundsConnections(t *testing.T) {
	h := &fakeHandler{}
	const deadline = 300 * time.Millisecond
	socket, _ := startServeWith(t, h, func(o *options) { o.maxOpen, o.requestDeadline = 1, deadline })
	a := dial(t, socket) // holds the only slot: sends nothing
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	b := dial(t, socket) // the kernel accepts it into the backlog
	b.send("STATUS\n")
	b.conn.SetReadDeadline(time.Now().Add(deadline / 2))
	if r, err := b.br.ReadString('\n'); err == nil {
		t.Fatalf("second client served while the first holds the only slot: %q", r)
	}
	if r := b.reply(); !strings.HasPrefix(r, "OK ") {
		t.Errorf("b after a was closed: %q", r)
	}
	if took := time.Since(start); took > deadline+time.Second {
		t.Errorf("b answered after %v; a should have been closed after %v", took, deadline)
	}
	a.closed()
}

// With maxHandling requests in the Handler, the next waits for a slot,
// and gets it once one is done.
func TestServeBoundsHandling(t *testing.T) {
	block := make(chan struct{})
	h := &fakeHandler{block: block}
	socket, _ := startServe(t, h, 1)
	a := dial(t, socket)
	a.send("PUSH " + testPath(1, "a") + "\n") // holds the only handling slot
	time.Sleep(50 * time.Millisecond)
	b := dial(t, socket)
	b.send("PUSH " + testPath(2, "b") + "\n")
	b.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := b.br.ReadString('\n'); err == nil {
		t.Fatalf("second request handled while the first holds the only slot: %q", r)
	}
	close(block)
	if r := a.reply(); r != "OK 1" {
		t.Errorf("a: %q", r)
	}
	if r := b.reply(); r != "OK 1" {
		t.Errorf("b: %q", r)
	}
}

func TestServeStopsWithIdleAndBusyClients(t *testing.T) {
	before := runtime.NumGoroutine()
	block := make(chan struct{}) // never closed: Enqueue waits for ctx
	h := &fakeHandler{block: block}
	socket, stop := startServe(t, h, 4)
	idle := dial(t, socket)
	busy := dial(t, socket)
	busy.send("PUSH " + testPath(1, "a") + "\n")
	half := dial(t, socket)
	half.send("PUSH /nix/store/")     // mid-line
	status := dialAs(t, socket, true) // a status reader, idle
	// Over-long and still sending: the daemon drains it.
	long := dial(t, socket)
	go func() {
		chunk := []byte(strings.Repeat("z", 64<<10))
		for long.conn.SetWriteDeadline(time.Now().Add(10*time.Second)) == nil {
			if _, err := long.conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)

	if took := stop(); took > 2*time.Second {
		t.Errorf("Serve took %v to stop", took)
	}
	// Every connection was closed by the server.
	for name, c := range map[string]*client{"idle": idle, "busy": busy, "half": half, "status": status, "long": long} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		// A reset is a close too: "long" was closed with data unread.
		if _, err := io.ReadAll(c.br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
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
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(context.Background(), ln, &fakeHandler{}, testLog(t))
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener: %v", err)
	}
}

func TestClient(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if n, err := Push(ctx, socket, []string{testPath(1, "a"), testPath(2, "b")}); n != 2 || err != nil {
		t.Errorf("Push: %d, %v", n, err)
	}
	if n, err := Push(ctx, socket, []string{testPath(1, "a")}); n != 0 || err != nil {
		t.Errorf("Push again: %d, %v", n, err)
	}
	if js, err := Status(ctx, socket); string(js) != `{"queued":2}` || err != nil {
		t.Errorf("Status: %s, %v", js, err)
	}
	// What the daemon would refuse is not sent.
	for _, bad := range [][]string{nil, {"/tmp/x"}, {testPath(3, "c") + "\n" + "STATUS"}} {
		if _, err := Push(ctx, socket, bad); err == nil || !strings.Contains(err.Error(), "invalid request") {
			t.Errorf("Push(%q): %v", bad, err)
		}
	}
	if h.callCount() != 2 {
		t.Errorf("handler called %d times", h.callCount())
	}

	h.mu.Lock()
	h.err = errors.New("queue closed")
	h.mu.Unlock()
	_, err := Push(ctx, socket, []string{testPath(4, "d")})
	var rerr *ReplyError
	if !errors.As(err, &rerr) || rerr.BadRequest() || rerr.Msg != "enqueue: queue closed" {
		t.Errorf("failing enqueue: %v", err)
	}

	// No daemon.
	if _, err := Status(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Error("no error without a daemon")
	}
}

// TestClientReplies: how the client reads what a daemon might send.
func TestClientReplies(t *testing.T) {
	for reply, want := range map[string]string{
		"ERR bad request: unknown verb \"STATUS\"\n": "bad request",
		"OK many\n": "unexpected reply to PUSH",
		"HELLO\n":   "unexpected reply",
		"OK 1":      "connection closed without a reply",
		"":          "connection closed without a reply",
	} {
		socket := fixedServer(t, reply)
		_, err := Push(context.Background(), socket, []string{testPath(1, "a")})
		var rerr *ReplyError
		if err == nil || !strings.Contains(err.Error(), want) || (want == "bad request") != (errors.As(err, &rerr) && rerr.BadRequest()) {
			t.Errorf("reply %q: %v", reply, err)
		}
	}
}

// fixedServer answers every connection with reply, after reading a line.
func fixedServer(t *testing.T, reply string) string {
	return replyServer(t, reply, true)
}

// replyServer answers every connection with reply, reading a line first
// if readFirst, and hangs up.
func replyServer(t *testing.T, reply string, readFirst bool) string {
	t.Helper()
	socket := socketPath(t)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if readFirst {
				bufio.NewReader(c).ReadString('\n')
			}
			io.WriteString(c, reply)
			c.Close()
		}
	})
	return socket
}

func TestClientTimeout(t *testing.T) {
	socket := silentServer(t) // accepts and never answers

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Status(ctx, socket)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}

	// Cancellation without a deadline also ends the wait.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	if _, err := Status(ctx2, socket); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
}

// silentServer listens on a fresh socket, accepts connections and
// never answers: the daemon as a client sees it when it hangs. Everything
// is closed and waited for at cleanup.
func silentServer(t *testing.T) string {
	t.Helper()
	socket := socketPath(t)
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

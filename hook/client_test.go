package hook

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// drain drains dir and returns the paths found.
func drain(t *testing.T, dir string) []string {
	t.Helper()
	var c spoolCollector
	if _, err := DrainSpool(context.Background(), dir, c.enqueue, testLog(t)); err != nil {
		t.Fatal(err)
	}
	return c.all()
}

func TestDeliverSends(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)
	spool := filepath.Join(t.TempDir(), "spool")
	out := []string{testPath(1, "hello"), testPath(2, "hello-man")}
	drv := testPath(3, "hello.drv")

	res, err := Deliver(context.Background(), socket, spool, " "+out[0]+"  "+out[1]+" ", drv, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 3 || res.Added != 3 || res.Spooled != 0 || res.SpoolFile != "" || res.SocketErr != nil {
		t.Errorf("%+v", res)
	}
	if got := h.paths(); !slices.Equal(got, append(slices.Clone(out), drv)) {
		t.Errorf("daemon got %q", got)
	}
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Errorf("spool dir created: %v", err)
	}

	// Again: already queued; duplicates in OUT_PATHS are sent once.
	res, err = Deliver(context.Background(), socket, spool, out[0]+" "+out[0], "", 2*time.Second)
	if err != nil || res.Sent != 1 || res.Added != 0 {
		t.Errorf("%+v, %v", res, err)
	}
}

func TestDeliverSpoolsWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "no-such.sock")
	spool := filepath.Join(dir, "spool")
	out := []string{testPath(1, "a"), testPath(2, "b")}

	start := time.Now()
	res, err := Deliver(context.Background(), socket, spool, strings.Join(out, " "), "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v with no socket", d)
	}
	if res.Sent != 0 || res.Spooled != 2 || res.SpoolFile == "" || res.SocketErr == nil {
		t.Errorf("%+v", res)
	}
	if got := drain(t, spool); !slices.Equal(got, out) {
		t.Errorf("spool drained to %q", got)
	}

	// A socket file nobody listens on (a dead daemon) behaves the same.
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	res, err = Deliver(context.Background(), dead, spool, out[0], "", 2*time.Second)
	if err != nil || res.Spooled != 1 {
		t.Errorf("dead socket: %+v, %v", res, err)
	}
}

func TestDeliverTimesOutAndSpools(t *testing.T) {
	socket := silentServer(t)

	spool := filepath.Join(t.TempDir(), "spool")
	out := testPath(1, "slow")
	const timeout = 300 * time.Millisecond
	start := time.Now()
	res, err := Deliver(context.Background(), socket, spool, out, "", timeout)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took < timeout || took > timeout+time.Second {
		t.Errorf("took %v with a %v timeout", took, timeout)
	}
	if res.Spooled != 1 || !errors.Is(res.SocketErr, context.DeadlineExceeded) {
		t.Errorf("%+v", res)
	}
	if got := drain(t, spool); !slices.Equal(got, []string{out}) {
		t.Errorf("drained %q", got)
	}
}

func TestDeliverDaemonErrorSpools(t *testing.T) {
	h := &fakeHandler{err: errors.New("database is locked")}
	socket, _ := startServe(t, h, 4)
	spool := t.TempDir()
	res, err := Deliver(context.Background(), socket, spool, testPath(1, "a"), "", 2*time.Second)
	if err != nil || res.Spooled != 1 || res.Sent != 0 || !strings.Contains(res.SocketErr.Error(), "database is locked") {
		t.Errorf("%+v, %v", res, err)
	}
}

// flakyHandler accepts the first n Enqueue calls, then fails.
type flakyHandler struct {
	fakeHandler
	n int
}

func (h *flakyHandler) Enqueue(ctx context.Context, paths []string, source string) (int, error) {
	h.mu.Lock()
	fail := h.calls >= h.n
	if fail {
		h.calls++
	}
	h.mu.Unlock()
	if fail {
		return 0, errors.New("shutting down")
	}
	return h.fakeHandler.Enqueue(ctx, paths, source)
}

func TestDeliverPartialSendSpoolsTheRest(t *testing.T) {
	h := &flakyHandler{n: 1}
	socket, _ := startServe(t, h, 4)
	spool := t.TempDir()
	var out []string
	for i := range MaxPaths + 5 {
		out = append(out, testPath(i, "p"))
	}
	res, err := Deliver(context.Background(), socket, spool, strings.Join(out, " "), "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != MaxPaths || res.Spooled != 5 {
		t.Errorf("%+v", res)
	}
	if got := append(h.paths(), drain(t, spool)...); !slices.Equal(got, out) {
		t.Errorf("sent+spooled differ from OUT_PATHS (%d vs %d)", len(got), len(out))
	}
}

func TestDeliverBadTokens(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, 4)
	good := testPath(1, "good")
	out := "relative/path " + good + " /nix/store/../etc/passwd /tmp/x " + testPath(2, "x") + "/bin/sh"
	res, err := Deliver(context.Background(), socket, t.TempDir(), out, "not-a-drv", 2*time.Second)
	if res.Sent != 1 || res.Spooled != 0 {
		t.Errorf("%+v", res)
	}
	if got := h.paths(); !slices.Equal(got, []string{good}) {
		t.Errorf("daemon got %q", got)
	}
	if err == nil {
		t.Fatal("no error for invalid tokens")
	}
	for _, bad := range []string{`"relative/path"`, `"/nix/store/../etc/passwd"`, `"/tmp/x"`, `/bin/sh"`, `"not-a-drv"`} {
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("error does not name %s: %v", bad, err)
		}
	}

	// Nothing valid: nothing sent, nothing spooled, the error says why.
	spool := filepath.Join(t.TempDir(), "spool")
	res, err = Deliver(context.Background(), socket, spool, "/tmp/x", "", 2*time.Second)
	if err == nil || res != (Result{}) {
		t.Errorf("%+v, %v", res, err)
	}
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Error("spool dir created")
	}
	// Nothing at all.
	if res, err := Deliver(context.Background(), socket, spool, "  ", "", 2*time.Second); err != nil || res != (Result{}) {
		t.Errorf("empty: %+v, %v", res, err)
	}

	// Many bad tokens: the error stays short.
	many := strings.Repeat("/tmp/"+strings.Repeat("x", 300)+" ", 1000)
	_, err = Deliver(context.Background(), socket, spool, many+good, "", 2*time.Second)
	if err == nil || len(err.Error()) > 2000 {
		t.Errorf("error of %d bytes", len(err.Error()))
	}
}

func TestDeliverCannotSpool(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := testPath(1, "a")
	res, err := Deliver(context.Background(), filepath.Join(dir, "none.sock"), filepath.Join(blocker, "spool"), p, "", time.Second)
	if err == nil || res.Spooled != 0 || res.Sent != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.Contains(err.Error(), "could not deliver 1 store paths") || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("error: %v", err)
	}
}

func TestDeliverBadRequestReplyNotSpooled(t *testing.T) {
	// A daemon of another version that rejects what we send.
	socket := socketPath(t)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() { ln.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			c.Write([]byte("ERR bad request: unknown verb \"PUSH\"\n"))
			c.Close()
		}
	})
	spool := t.TempDir()
	res, err := Deliver(context.Background(), socket, spool, testPath(1, "a"), "", time.Second)
	if err == nil || res.Spooled != 0 || res.Sent != 0 || !strings.Contains(err.Error(), "unknown verb") {
		t.Errorf("%+v, %v", res, err)
	}
	if len(spoolFiles(t, spool)) != 0 {
		t.Error("spooled paths the daemon rejects")
	}
}

func TestDeliverBatches(t *testing.T) {
	if b := Batches(nil); b != nil {
		t.Errorf("%v", b)
	}
	long := "/nix/store/" + testHash + "-" + strings.Repeat("n", 211)
	var paths []string
	for range 3 * MaxPaths {
		paths = append(paths, long)
	}
	batches := Batches(paths)
	total := 0
	for _, b := range batches {
		line := Request{Verb: VerbPush, Paths: b}.String()
		if len(b) == 0 || len(b) > MaxPaths || len(line) > MaxLine {
			t.Errorf("batch of %d paths, %d bytes", len(b), len(line))
		}
		if _, err := ParseRequest(line); err != nil {
			t.Errorf("batch does not parse: %v", err)
		}
		total += len(b)
	}
	if total != len(paths) {
		t.Errorf("batches hold %d paths of %d", total, len(paths))
	}
}

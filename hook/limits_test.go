package hook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Issue #24: clients that connect and hang must not keep the socket from
// answering the hook.

// statusPrefix marks status readers in tests, which run as one user:
// startServeWith counts a peer bound to an abstract name starting with it
// as a user other than root and the daemon's (dialStatus).
const statusPrefix = "@nixpushd-test-status-"

var statusSeq atomic.Int64

// dialAs connects as a privileged peer, or as a status reader.
func dialAs(t *testing.T, socket string, status bool) *client {
	t.Helper()
	if !status {
		return dial(t, socket)
	}
	laddr := &net.UnixAddr{Net: "unix", Name: fmt.Sprintf("%s%d-%d", statusPrefix, os.Getpid(), statusSeq.Add(1))}
	conn, err := net.DialUnix("unix", laddr, &net.UnixAddr{Net: "unix", Name: socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// closedBy waits until the daemon closes c (EOF or reset, after whatever
// it sent), at the latest at deadline, and returns what it sent.
func (c *client) closedBy(deadline time.Time) (string, error) {
	c.conn.SetReadDeadline(deadline)
	b, err := io.ReadAll(c.br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return string(b), fmt.Errorf("still open at the deadline (sent %q)", b)
	}
	return string(b), nil
}

// stillOpen reports whether c is open and silent right now.
func (c *client) stillOpen() bool {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.br.Peek(1)
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// slowloris sends line to c one byte per interval until the daemon hangs
// up or stop is closed.
func slowloris(c *client, line string, interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < len(line); i++ {
		c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.conn.Write([]byte{line[i]}); err != nil {
			return
		}
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// Hundreds of idle or slowloris clients, privileged or not, hold no slot
// a request needs: PUSH and STATUS are answered at once, long before the
// hung clients' requestDeadline, which then closes each of them.
func TestServeHungClients(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		status bool // connect as status readers
		slow   bool // send one byte a second instead of nothing
	}{
		{"500 idle", 500, false, false},
		{"500 idle status readers", 500, true, false},
		{"100 slowloris", 100, false, true},
		{"100 slowloris status readers", 100, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &fakeHandler{}
			socket, _ := startServe(t, h, maxHandling)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer func() { close(stop); wg.Wait() }()
			hung := make([]*client, tc.n)
			connected := make([]time.Time, tc.n)
			for i := range hung {
				connected[i] = time.Now()
				hung[i] = dialAs(t, socket, tc.status)
				if tc.slow {
					wg.Go(func() { slowloris(hung[i], "PUSH "+testPath(i, "slow")+"\n", time.Second, stop) })
				}
			}
			time.Sleep(50 * time.Millisecond) // let the daemon accept them

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			n, err := Push(ctx, socket, []string{testPath(1, "hook")})
			if err != nil || n != 1 {
				t.Fatalf("PUSH with %s clients: %d, %v", tc.name, n, err)
			}
			if _, err := Status(ctx, socket); err != nil {
				t.Fatalf("STATUS with %s clients: %v", tc.name, err)
			}
			took := time.Since(start)
			if took >= time.Second || time.Since(connected[tc.n-1]) >= requestDeadline {
				t.Errorf("answered after %v: not before the hung clients' deadline", took)
			}
			t.Logf("PUSH and STATUS answered in %v", took)
			// Privileged ones are still open: they were not closed to
			// make room.
			if !tc.status && !hung[tc.n-1].stillOpen() {
				t.Error("a hung privileged client was closed before its deadline")
			}

			// Each is closed after requestDeadline (status readers over
			// the limit at once, with ERR busy), never answered.
			busy := 0
			for i, c := range hung {
				got, err := c.closedBy(connected[i].Add(requestDeadline + time.Second))
				if err != nil {
					t.Fatalf("hung client %d: %v", i, err)
				}
				switch {
				case got == "":
				case tc.status && strings.HasPrefix(got, "ERR busy: "):
					busy++
				default:
					t.Errorf("hung client %d got %q", i, got)
				}
			}
			if want := tc.n - maxStatusConns; tc.status && busy < want {
				t.Errorf("%d status readers were refused, want at least %d", busy, want)
			}
			if c := h.callCount(); c != 1 {
				t.Errorf("handler called %d times, want once (the PUSH)", c)
			}
		})
	}
}

// A client sending a byte a second is closed once requestDeadline has
// passed since it connected, like a silent one, and does not hold up
// others meanwhile.
func TestServeSlowloris(t *testing.T) {
	const deadline = 1500 * time.Millisecond
	h := &fakeHandler{}
	socket, _ := startServeWith(t, h, func(o *options) { o.requestDeadline, o.maxOpen, o.maxHandling = deadline, 8, 1 })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	start := time.Now()
	slow := dial(t, socket)
	wg.Go(func() { slowloris(slow, "STATUS\n", time.Second, stop) })

	// Others come and go meanwhile, more of them than there are slots.
	for i := range 20 {
		if r := ask(t, socket, "PUSH "+testPath(i, "other")); r != "OK 1" {
			t.Fatalf("request %d during the slowloris: %q", i, r)
		}
	}
	if took := time.Since(start); took >= deadline {
		t.Errorf("20 requests took %v", took)
	}
	got, err := slow.closedBy(start.Add(deadline + time.Second))
	took := time.Since(start)
	if err != nil || got != "" {
		t.Fatalf("slowloris: %q, %v", got, err)
	}
	if took < deadline {
		t.Errorf("slowloris closed after %v, before the deadline (%v)", took, deadline)
	}
}

// A client that sends a 10 MB line before it reads gets the ERR line: the
// daemon reads on (drains) until the client's write is done.
func TestServeLineTooLongClient(t *testing.T) {
	tests := []struct {
		name   string
		status bool
		line   string
	}{
		{"10 MB line", false, strings.Repeat("P", 10<<20) + "\n"},
		{"10 MB PUSH", false, "PUSH " + strings.Repeat(testPath(1, "x")+" ", (10<<20)/60) + "\n"},
		{"10 MB line from a status reader", true, strings.Repeat("S", 10<<20) + "\n"},
		{"10 MB without newline", false, strings.Repeat("N", 10<<20)},
	}
	want := fmt.Sprintf("ERR bad request: request line longer than %d bytes\n", MaxLine)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHandler{}
			socket, _ := startServe(t, h, 4)
			c := dialAs(t, socket, tc.status)
			c.conn.SetDeadline(time.Now().Add(10 * time.Second))
			// Write it all, then read, as socat or a script would.
			if _, err := io.WriteString(c.conn, tc.line); err != nil {
				t.Fatalf("writing the line: %v", err)
			}
			got, err := io.ReadAll(c.br)
			if err != nil || string(got) != want {
				t.Errorf("reply %.200q, %v; want %q", got, err, want)
			}
			if h.callCount() != 0 {
				t.Error("handler called")
			}
		})
	}
}

// Status readers have maxStatusConns connections of their own. With
// those taken, one more gets ERR busy at once, and privileged requests
// are still answered at once; once they leave, status readers are
// served again. A status reader may not PUSH.
func TestServeStatusReaderLimit(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, maxHandling)
	var idle []*client
	for range maxStatusConns {
		idle = append(idle, dialAs(t, socket, true))
	}
	time.Sleep(50 * time.Millisecond)

	tests := []struct {
		status    bool
		line      string
		wantStart string
	}{
		{true, "STATUS", "ERR busy: "},
		{true, "PUSH " + testPath(1, "a"), "ERR busy: "},
		{false, "PUSH " + testPath(1, "a"), "OK 1"},
		{false, "STATUS", `OK {"queued":1}`},
	}
	for _, tc := range tests {
		start := time.Now()
		c := dialAs(t, socket, tc.status)
		// A refused client may find the daemon gone before it writes.
		io.WriteString(c.conn, tc.line+"\n")
		if r := c.reply(); !strings.HasPrefix(r, tc.wantStart) {
			t.Errorf("status reader %v, %.20q with the status readers' slots taken: %q, want %q...", tc.status, tc.line, r, tc.wantStart)
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("status reader %v, %.20q: answered after %v", tc.status, tc.line, took)
		}
	}

	for _, c := range idle {
		c.conn.Close()
	}
	// The slots are free once the daemon has seen them go.
	var r string
	for range 100 {
		c := dialAs(t, socket, true)
		io.WriteString(c.conn, "STATUS\n")
		if r = c.reply(); !strings.HasPrefix(r, "ERR busy: ") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r != `OK {"queued":1}` {
		t.Errorf("status reader after the others left: %q", r)
	}
	c := dialAs(t, socket, true)
	c.send("PUSH " + testPath(2, "b") + "\n")
	if r := c.reply(); !strings.HasPrefix(r, "ERR permission denied") {
		t.Errorf("PUSH from a status reader: %q", r)
	}
}

// Status readers connecting and closing as fast as they can, more at
// once than their limit, delay a privileged PUSH only by the kernel's
// listen backlog that all clients share (the daemon accepts and refuses
// them in microseconds), never by a slot: each PUSH is answered, well
// within the hook's 2 s.
func TestServeStatusReaderFlood(t *testing.T) {
	h := &fakeHandler{}
	socket, _ := startServe(t, h, maxHandling)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var floods atomic.Int64
	// Two flooders: in this process they compete with the accept loop
	// for the scheduler, not only for the socket.
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				laddr := &net.UnixAddr{Net: "unix", Name: fmt.Sprintf("%s%d-%d", statusPrefix, os.Getpid(), statusSeq.Add(1))}
				conn, err := net.DialUnix("unix", laddr, &net.UnixAddr{Net: "unix", Name: socket})
				if err == nil {
					floods.Add(1)
					conn.Close()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(100 * time.Millisecond)
	var worst time.Duration
	end := time.Now().Add(time.Second)
	pushes := 0
	for ; time.Now().Before(end); pushes++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		n, err := Push(ctx, socket, []string{testPath(pushes, "flood")})
		cancel()
		if err != nil || n != 1 {
			t.Fatalf("PUSH %d during the flood: %d, %v", pushes, n, err)
		}
		worst = max(worst, time.Since(start))
	}
	t.Logf("%d status-reader connections; slowest of %d PUSHes: %v", floods.Load(), pushes, worst)
}

// A daemon that answers and hangs up before reading (ERR busy) is heard:
// the client reads the reply even though its write failed.
func TestClientReplyBeforeRead(t *testing.T) {
	socket := replyServer(t, "ERR busy: try again\n", false)
	// More than the socket buffers hold: the write fails with EPIPE.
	paths := make([]string, MaxPaths)
	for i := range paths {
		paths[i] = testPath(i, "many")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Push(ctx, socket, paths)
	var rerr *ReplyError
	if !errors.As(err, &rerr) || rerr.Msg != "busy: try again" || rerr.BadRequest() {
		t.Errorf("Push to a daemon that hung up before reading: %v", err)
	}
}

package main

// Issue #24: clients that connect to the daemon's socket and hang (idle,
// slowloris) or churn must not keep the real post-build-hook from being
// answered: it must queue its paths, not spool them.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// socketIdleDeadline is hook's requestDeadline, as a user sees it.
const socketIdleDeadline = 2 * time.Second

// socketDaemon starts a daemon whose socket a status group (nogroup, so
// nobody's) may use, in a directory nobody can enter.
func socketDaemon(t *testing.T) (d *daemonProc, spool string) {
	t.Helper()
	state := filepath.Join(worldDir(t), "state")
	d = startDaemonProc(t, nil, state, "--to", "file://"+filepath.Join(t.TempDir(), "cache"),
		"--watch-store=false", "--status-group", "nogroup")
	return d, filepath.Join(t.TempDir(), "spool")
}

// runHookTimed runs `nixpushd hook` as Nix would for a build of paths,
// and fails the test unless the daemon queued them (nothing spooled).
func runHookTimed(t *testing.T, d *daemonProc, spool string, paths ...string) time.Duration {
	t.Helper()
	// Every hook must return: one that hangs fails the test, not CI.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "hook")
	cmd.Env = append(cleanEnv(), "NIXPUSHD_SOCKET="+d.socket, "NIXPUSHD_SPOOL_DIR="+spool, "OUT_PATHS="+strings.Join(paths, " "))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil || !strings.Contains(string(out), "nixpushd: queued "+plural(len(paths), "path")+" for upload") {
		t.Errorf("hook after %v: %v\n%s", took, err, out)
	}
	if spooled, _ := filepath.Glob(filepath.Join(spool, "*")); len(spooled) > 0 {
		t.Fatalf("the hook spooled (after %v): %v\n%s", took, spooled, out)
	}
	return took
}

// fakeStorePath is a valid store path that need not exist: the hook and
// the socket check only the syntax.
func fakeStorePath(i int, name string) string {
	return fmt.Sprintf("/nix/store/%032d-%s", i, name)
}

// idlerSource is a helper program, run as nobody: it opens n connections
// to a socket, sends nothing, says "connected", and then reports how the
// daemon ended them within hold: refused with ERR busy, closed without a
// word, or still open.
const idlerSource = `package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	hold, _ := time.ParseDuration(os.Args[3])
	var conns []net.Conn
	for range n {
		c, err := net.Dial("unix", os.Args[1])
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("connected")
	deadline := time.Now().Add(hold)
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(deadline)
			b, err := io.ReadAll(c)
			how := "closed"
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				how = "open"
			case strings.HasPrefix(string(b), "ERR busy: "):
				how = "busy"
			case len(b) > 0:
				how = "other"
			}
			mu.Lock()
			counts[how]++
			mu.Unlock()
		})
	}
	wg.Wait()
	fmt.Printf("busy=%d closed=%d open=%d other=%d\n", counts["busy"], counts["closed"], counts["open"], counts["other"])
}
`

// idler is the idle helper running as nobody.
type idler struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	report chan string
}

// startIdlerAsNobody builds idlerSource and runs it as nobody (uid and
// gid 65534, nogroup: the daemon's status group) with n connections to
// socket, returning once they are all open.
func startIdlerAsNobody(t *testing.T, socket string, n int, hold time.Duration) *idler {
	t.Helper()
	dir := worldDir(t)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(idlerSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module idler\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "idler", ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the idle helper: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(dir, "idler"), socket, fmt.Sprint(n), hold.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	id := &idler{cmd: cmd, out: bufio.NewReader(stdout), report: make(chan string, 1)}
	if line, err := id.out.ReadString('\n'); line != "connected\n" {
		t.Fatalf("idle helper as nobody: %q, %v", line, err)
	}
	go func() {
		line, _ := id.out.ReadString('\n')
		id.report <- strings.TrimSpace(line)
	}()
	return id
}

// openIdle opens n connections to socket that send nothing.
func openIdle(t *testing.T, socket string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

// closedWithin reports whether the daemon closed c, without a reply,
// by deadline.
func closedWithin(c net.Conn, deadline time.Time) error {
	c.SetReadDeadline(deadline)
	b, err := io.ReadAll(c)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errors.New("still open")
	case len(b) > 0:
		return fmt.Errorf("got %q", b)
	}
	return nil
}

// 500 idle connections from root, and 500 from a status-group member,
// then the hook: it is answered at once, long before the idle ones are
// closed; then they are.
func TestSocketIdleClients(t *testing.T) {
	d, spool := socketDaemon(t)
	start := time.Now()
	idle := openIdle(t, d.socket, 500)
	var nobody *idler
	if os.Geteuid() == 0 {
		nobody = startIdlerAsNobody(t, d.socket, 500, 2*socketIdleDeadline)
	} else {
		// Only root can run a helper as another user.
		t.Log("not root: no status-group connections, only this user's")
	}
	time.Sleep(100 * time.Millisecond) // let the daemon accept them all

	took := runHookTimed(t, d, spool, fakeStorePath(1, "idle-out"), fakeStorePath(2, "idle-dev"))
	t.Logf("hook answered in %v with 500 idle connections from root and 500 from nobody", took)
	if took >= time.Second {
		t.Errorf("the hook took %v with idle clients", took)
	}
	if r := d.request("STATUS"); !strings.HasPrefix(r, "OK {") {
		t.Errorf("STATUS with idle clients: %q", r)
	}
	// The idle connections were not what made room: they are still open
	// (answered before their deadline), and closed only after it.
	if since := time.Since(start); since >= socketIdleDeadline {
		t.Fatalf("the checks took %v, past the idle deadline: inconclusive", since)
	}
	for i, c := range idle {
		if err := closedWithin(c, start.Add(socketIdleDeadline+2*time.Second)); err != nil {
			t.Fatalf("idle connection %d from root: %v", i, err)
		}
	}
	if elapsed := time.Since(start); elapsed < socketIdleDeadline {
		t.Errorf("idle connections closed after %v, before the deadline", elapsed)
	}
	if nobody != nil {
		// 8 are the status group's; the other 492 are refused at once.
		select {
		case r := <-nobody.report:
			if r != "busy=492 closed=8 open=0 other=0" {
				t.Errorf("nobody's idle connections ended as %s, want busy=492 closed=8", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no report from the idle helper")
		}
	}
	if !d.running() {
		t.Fatal("daemon died")
	}
	d.stop()
}

// A client sending a byte a second is closed after the deadline, and
// hooks meanwhile are answered at once.
func TestSocketSlowloris(t *testing.T) {
	d, spool := socketDaemon(t)
	start := time.Now()
	c, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for _, b := range []byte("PUSH " + fakeStorePath(9, "slow") + "\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	})
	for i := range 3 {
		if took := runHookTimed(t, d, spool, fakeStorePath(10+i, "beside-slowloris")); took >= time.Second {
			t.Errorf("hook %d beside a slowloris took %v", i, took)
		}
	}
	if err := closedWithin(c, start.Add(socketIdleDeadline+2*time.Second)); err != nil {
		t.Fatalf("slowloris: %v", err)
	}
	if took := time.Since(start); took < socketIdleDeadline {
		t.Errorf("slowloris closed after %v, before the deadline", took)
	}
	t.Logf("slowloris closed after %v", time.Since(start).Round(time.Millisecond))
	if strings.Contains(d.out.String(), "STORE_PATH="+fakeStorePath(9, "slow")) {
		t.Error("the slowloris's PUSH was queued")
	}
	d.stop()
}

// 1,000 clients connecting and closing as fast as they can for 10 s, while
// hooks deliver real store paths: every hook returns with its paths
// queued, nothing is spooled.
func TestSocketChurn(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 12})
	d, spool := socketDaemon(t)

	// A millisecond between connections: about 60,000 connections a
	// second here, all the daemon accepts, with its listen backlog full
	// much of the time. (Clients that retry a full backlog with no pause
	// at all just saturate the machine: see TestServeStatusReaderFlood.)
	const clients, churnFor, churnCap, churnPause = 1000, 10 * time.Second, 2 * time.Minute, time.Millisecond
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var conns, refused atomic.Int64
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("unix", d.socket)
				if err != nil {
					refused.Add(1) // a full backlog: EAGAIN
					time.Sleep(churnPause)
					continue
				}
				conns.Add(1)
				c.Close()
				time.Sleep(churnPause)
			}
		})
	}
	// Churn for churnFor, and on until every path has gone through a
	// hook: a loaded machine runs fewer hooks in churnFor, which is no
	// fault. Each hook has its own 20 s deadline in runHookTimed; the cap
	// only keeps a daemon that answers nothing from holding CI.
	began := time.Now()
	end, giveUp := began.Add(churnFor), began.Add(churnCap)
	var worst time.Duration
	hooks := 0
	for ; time.Now().Before(end) || (hooks < len(cl.All) && time.Now().Before(giveUp)); hooks++ {
		p := cl.All[hooks%len(cl.All)]
		worst = max(worst, runHookTimed(t, d, spool, p))
		if t.Failed() {
			break
		}
	}
	close(stop)
	wg.Wait()
	took := time.Since(began)
	t.Logf("%d hooks in %v beside %d connections from %d churning clients (%d connects refused by a full backlog); slowest hook %v",
		hooks, took.Round(time.Millisecond), conns.Load(), clients, refused.Load(), worst)
	if hooks < len(cl.All) {
		t.Fatalf("only %d of %d paths went through a hook in %v of churn", hooks, len(cl.All), took.Round(time.Millisecond))
	}
	log := d.out.String()
	for _, p := range cl.All {
		if !strings.Contains(log, `msg="socket: queued" STORE_PATH=`+p) {
			t.Errorf("%s was not queued through the socket", p)
		}
	}
	if !d.running() {
		t.Fatal("daemon died")
	}
	d.stop()
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// daemonProc is a running `nixpushd daemon`.
type daemonProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	out     *syncBuffer
	state   string
	socket  string
	args    []string
	env     []string
	exited  chan struct{}
	exitErr error
}

// startDaemonProc starts the daemon with its own state dir and socket.
// args are extra flags (e.g. --to). The process is killed at cleanup.
func startDaemonProc(t testing.TB, env []string, state string, args ...string) *daemonProc {
	t.Helper()
	if state == "" {
		state = t.TempDir()
	}
	d := &daemonProc{t: t, state: state, socket: filepath.Join(state, "nixpushd.sock"), args: args, env: env}
	d.start()
	t.Cleanup(func() {
		if d.running() {
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.out.String())
		}
	})
	return d
}

func (d *daemonProc) start() {
	d.t.Helper()
	full := append([]string{"daemon", "--state-dir", d.state, "--socket", d.socket,
		"--reconcile-interval", "2s", "--max-retry-delay", "2s", "--log-level", "debug"}, d.args...)
	d.cmd = exec.Command(bin, full...)
	d.cmd.Env = append(append(cleanEnv(), testenv.NixEnv()...), d.env...)
	if d.out == nil {
		d.out = &syncBuffer{}
	}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	waitFor(d.t, 30*time.Second, "daemon ready", func() bool {
		if !d.running() {
			d.t.Fatalf("daemon exited: %v\n%s", d.exitErr, d.out.String())
		}
		return strings.Contains(d.out.String(), "nixpushd ready")
	})
}

func (d *daemonProc) running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and requires a clean exit 0.
func (d *daemonProc) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		d.t.Fatal("daemon did not exit within 60s of SIGTERM")
	}
	if d.exitErr != nil {
		d.t.Fatalf("daemon exit after SIGTERM: %v\n%s", d.exitErr, d.out.String())
	}
}

func (d *daemonProc) kill9() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// request sends one protocol line to the daemon and returns the reply.
func (d *daemonProc) request(line string) string {
	d.t.Helper()
	conn, err := net.DialTimeout("unix", d.socket, 5*time.Second)
	if err != nil {
		d.t.Fatalf("dial %s: %v", d.socket, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "%s\n", line)
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		d.t.Fatalf("reply to %q: %v", line, err)
	}
	return strings.TrimSpace(reply)
}

func (d *daemonProc) status() map[string]any {
	d.t.Helper()
	out, err := exec.Command(bin, "status", "--json", "--socket", d.socket, "--state-dir", d.state).CombinedOutput()
	if err != nil {
		d.t.Fatalf("status: %v\n%s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		d.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return m
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func narinfoKey(t testing.TB, p string) string {
	sp, err := nar.ParseStorePath(p)
	if err != nil {
		t.Fatal(err)
	}
	return sp.Hash + ".narinfo"
}

// assertBucketConsistent checks the invariant on whatever is in the bucket
// right now: every narinfo's NAR and references are there.
func assertBucketConsistent(t testing.TB, cache *testenv.Cache) int {
	t.Helper()
	objects := cache.Objects(t)
	n := 0
	for key := range objects {
		if !strings.HasSuffix(key, ".narinfo") {
			continue
		}
		n++
		ni, err := nar.ParseNarInfo(cache.Get(t, key))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if _, ok := objects[ni.URL]; !ok {
			t.Errorf("%s: its NAR %s is missing", key, ni.URL)
		}
		for _, r := range ni.References {
			if _, ok := objects[strings.SplitN(r, "-", 2)[0]+".narinfo"]; !ok {
				t.Errorf("%s: reference %s has no narinfo", key, r)
			}
		}
	}
	return n
}

// pushedVia reports whether the daemon's log shows path pushed because of
// the given source (watch, socket, spool, reconcile).
// pushedViaSoon waits a little for the "pushed" line: the daemon logs it
// just after the narinfo that a test may already have seen.
func pushedViaSoon(out interface{ String() string }, path, source string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pushedVia(out.String(), path, source) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pushedVia(log, path, source string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "msg=pushed") && strings.Contains(line, "STORE_PATH="+path+" ") && strings.Contains(line, "source="+source) {
			return true
		}
	}
	return false
}

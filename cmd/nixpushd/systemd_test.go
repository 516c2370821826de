package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The daemon under a fake systemd: READY=1 after start-up, STATUS= lines,
// WATCHDOG=1 when WATCHDOG_USEC is set, STOPPING=1 and exit 0 on SIGTERM.
func TestDaemonSdNotify(t *testing.T) {
	dir := t.TempDir()
	notifyPath, msgs := listenNotify(t, dir)
	cmd := exec.Command(bin, "daemon", "--state-dir", dir, "--socket", filepath.Join(dir, "s.sock"),
		"--to", "file://"+filepath.Join(dir, "cache"), "--watch-store=false")
	cmd.Env = append(cleanEnv(), "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=600000")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wait := func(prefix string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !slices.ContainsFunc(strings.Split(msgs.String(), "\n"), func(m string) bool { return strings.HasPrefix(m, prefix) }) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("no %s message; got %q\n%s", prefix, msgs.String(), out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("READY=1")
	wait("STATUS=0 pending")
	wait("WATCHDOG=1")
	cmd.Process.Signal(syscall.SIGTERM)
	wait("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
	}
}

// listenNotify is a fake systemd notify socket in dir: it returns the path
// for NOTIFY_SOCKET and the datagrams received, one per line.
func listenNotify(t *testing.T, dir string) (string, *syncBuffer) {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := &syncBuffer{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs.Write(append(buf[:n:n], '\n'))
		}
	}()
	return path, msgs
}

// Socket activation: the daemon serves on the listener systemd passes as
// fd 3 (LISTEN_FDS=1, LISTEN_PID=its pid) instead of creating --socket.
func TestDaemonSocketActivation(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "activated.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // the daemon serves on it after we close our copy
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	defer f.Close()
	// LISTEN_PID must be the daemon's own pid, known only after fork: let
	// the shell set it and exec, as systemd does.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"`, bin,
		"daemon", "--state-dir", dir, "--socket", filepath.Join(dir, "not-used.sock"),
		"--to", "file://"+filepath.Join(dir, "cache"), "--watch-store=false")
	cmd.Env = cleanEnv()
	cmd.ExtraFiles = []*os.File{f}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	waitFor(t, 20*time.Second, "daemon ready", func() bool { return strings.Contains(out.String(), "nixpushd ready") })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "STATUS")
	reply, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(reply, "OK {") {
		t.Errorf("STATUS on the activated socket: %q\n%s", reply, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "not-used.sock")); err == nil {
		t.Error("created --socket although systemd passed one")
	}
}

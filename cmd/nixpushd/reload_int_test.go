package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// A daemon started with a wrong secret in its --credentials-file is
// degraded; fixing the file is enough: the next probe reads it again, the
// daemon says the cache works, and it uploads, all without a restart.
func TestDegradedRereadsCredentialsFile(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "reread")
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	creds := filepath.Join(t.TempDir(), "aws-credentials")
	write := func(secret string) {
		t.Helper()
		// As an editor or `install` replaces it: a new file renamed over.
		tmp := creds + ".new"
		if err := os.WriteFile(tmp, []byte("AWS_ACCESS_KEY_ID="+cache.AccessKey+"\nAWS_SECRET_ACCESS_KEY="+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, creds); err != nil {
			t.Fatal(err)
		}
	}
	write("wrong-secret")
	d := startDaemonProc(t, []string{"NIXPUSHD_PROBE_EVERY=1s"}, "",
		"--to", cache.S3URL, "--credentials-file", creds, "--watch-store=false", "--log-level", "info")
	if !strings.Contains(d.out.String(), "nixpushd ready, but DEGRADED") {
		t.Fatalf("a wrong secret does not make the daemon degraded:\n%s", d.out.String())
	}
	write(cache.SecretKey)
	waitFor(t, 30*time.Second, "the cache works again", func() bool {
		return strings.Contains(d.out.String(), "the cache works again")
	})
	if r := d.request("PUSH " + cl.Top); !strings.HasPrefix(r, "OK") {
		t.Fatalf("PUSH: %s", r)
	}
	key := strings.TrimPrefix(cl.Top, "/nix/store/")[:32] + ".narinfo"
	waitFor(t, 30*time.Second, "the narinfo in the cache", func() bool { return cache.Has(t, key) })
	if st, _ := d.status()["degraded"].(bool); st {
		t.Errorf("status still says degraded after the fix")
	}
	if !d.running() {
		t.Errorf("the daemon exited")
	}
}

// A daemon that cannot take its metrics port or make its socket fails
// before it creates anything: exit 1, one line, and no signing key, queue
// or state directory left behind.
func TestDaemonChecksBeforeCreating(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	notDir := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		socket string // "": in a fresh directory
		extra  []string
		want   string
	}{
		{"metrics port taken", "", []string{"--metrics-listen", taken.Addr().String()},
			"nixpushd: metrics: cannot listen on " + taken.Addr().String() + ": another program"},
		{"socket in a directory that cannot be made", filepath.Join(notDir, "nixpushd.sock"), nil,
			"nixpushd: --socket " + filepath.Join(notDir, "nixpushd.sock") + ": "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			socket := tc.socket
			if socket == "" {
				socket = filepath.Join(t.TempDir(), "nixpushd.sock")
			}
			args := append([]string{"daemon", "--state-dir", state, "--socket", socket, "--watch-store=false"}, tc.extra...)
			out, err := nixpushd(t, nil, args...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if initExitCode(err) != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
				t.Errorf("exit %d, output %q; want exit 1 and one line starting with %q", initExitCode(err), out, tc.want)
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				entries, _ := os.ReadDir(state)
				t.Errorf("the failed start left the state directory %s (%v): %v", state, err, entries)
			}
		})
	}
}

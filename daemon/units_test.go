package daemon

import (
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// fakeNotifySocket stands in for systemd's NOTIFY_SOCKET and returns the
// messages it receives.
func fakeNotifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no sd_notify message")
		return ""
	}
}

func TestNotifier(t *testing.T) {
	ch := fakeNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "3000000")
	n := NewNotifier(slog.New(slog.DiscardHandler))
	if n.Watchdog != 3*time.Second {
		t.Errorf("Watchdog = %v, want 3s from WATCHDOG_USEC", n.Watchdog)
	}
	n.Ready()
	if m := recv(t, ch); m != "READY=1" {
		t.Errorf("got %q, want READY=1", m)
	}
	n.Status("1 pending")
	n.Status("1 pending") // unchanged: not sent again
	n.Status("0 pending")
	if m := recv(t, ch); m != "STATUS=1 pending" {
		t.Errorf("got %q", m)
	}
	if m := recv(t, ch); m != "STATUS=0 pending" {
		t.Errorf("got %q (duplicate status sent?)", m)
	}
	n.Ping()
	if m := recv(t, ch); m != "WATCHDOG=1" {
		t.Errorf("got %q", m)
	}
	n.Stopping()
	if m := recv(t, ch); m != "STOPPING=1" {
		t.Errorf("got %q", m)
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := NewNotifier(slog.New(slog.DiscardHandler))
	n.Ready() // must not fail or block
	if n.Watchdog != 0 {
		t.Errorf("watchdog %v without systemd", n.Watchdog)
	}
}

func TestFirstLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"upload failed\nstack", 120, "upload failed"},
		{"abcdef", 3, "abc…"},
		{"abcdef", 0, "abcdef"},
		{"ééé", 3, "é…"}, // not inside a rune
		{"", 10, ""},
	} {
		if got := FirstLine(tc.in, tc.max); got != tc.want {
			t.Errorf("FirstLine(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestFilter(t *testing.T) {
	c := &Config{StoreDir: "/nix/store", SkipSignedBy: []string{"cache.nixos.org-1"},
		Exclude: regexp.MustCompile(`^tmp-`)}
	p := "/nix/store/00000000000000000000000000000000-"
	for _, tc := range []struct {
		path string
		sigs []string
		want string
	}{
		{p + "hello-2.12", nil, ""},
		{p + "hello-2.12", []string{"my-cache-1:abc"}, ""},
		{p + "glibc-2.40", []string{"cache.nixos.org-1:abc"}, "signed-by-upstream"},
		{p + "hello.drv", nil, "derivation"},
		{p + "tmp-x", nil, "excluded"},
	} {
		if got := c.Filter(tc.path, tc.sigs); got != tc.want {
			t.Errorf("Filter(%s, %v) = %q, want %q", tc.path, tc.sigs, got, tc.want)
		}
	}
	c.PushDerivations = true
	c.Include = regexp.MustCompile(`^hello`)
	if got := c.Filter(p+"hello.drv", nil); got != "" {
		t.Errorf("drv with --push-derivations: %q", got)
	}
	if got := c.Filter(p+"other", nil); got != "not-included" {
		t.Errorf("--include: %q", got)
	}
}

func TestLockTarget(t *testing.T) {
	h := "/nix/store/00000000000000000000000000000000"
	for name, want := range map[string]string{
		h + "-x.lock":                h + "-x",
		h + "-x.drv.lock":            h + "-x.drv",
		h + "-x":                     "",
		"/tmp/" + h[11:] + "-x.lock": "",
		"/nix/store/short-x.lock":    "",
		h + "-x/sub.lock":            "",
	} {
		if got := lockTarget("/nix/store", name); got != want {
			t.Errorf("lockTarget(%q) = %q, want %q", name, got, want)
		}
	}
}

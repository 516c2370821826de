package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServeAndStop(t *testing.T) {
	m := New(Options{Version: "test"})
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln) }()

	code, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "nixpushd_up 1") || !strings.Contains(body, `nixpushd_build_info{go_version=`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if s := parse(t, strings.NewReader(body)); s.value(t, "process_start_time_seconds") <= 0 {
		t.Error("process metrics missing")
	}
	if code, body := get(t, "http://"+addr+"/"); code != http.StatusOK || !strings.Contains(body, "/metrics") {
		t.Errorf("/: %d %q", code, body)
	}
	if code, _ := get(t, "http://"+addr+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope: %d", code)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeListener after cancel: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still listening after ServeListener returned")
	}
}

// Stopping waits for a scrape in progress rather than cutting it off.
func TestServeWaitsForScrapeInProgress(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	m := New(Options{Queue: func() (map[string]int, error) {
		close(entered)
		<-release
		return map[string]int{"pending": 7}, nil
	}})
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("ServeListener returned (%v) while a scrape was in progress", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if body := <-got; !strings.Contains(body, `nixpushd_queue_items{state="pending"} 7`) {
		t.Errorf("scrape in progress at shutdown got %q", body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServeReturnsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(Options{}).Serve(ctx, "127.0.0.1:0"); err != nil {
		t.Fatalf("Serve with an ended context: %v", err)
	}
}

func TestListenErrorsSayWhatToDo(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := []struct {
		name, addr string
		want       []string
	}{
		{"port taken", taken.Addr().String(), []string{taken.Addr().String(), "already listens there", "--metrics-listen"}},
		{"no port", "localhost", []string{`"localhost"`, "HOST:PORT", "127.0.0.1:9101"}},
		{"bad port", "127.0.0.1:http-ish", []string{"127.0.0.1:http-ish", "--metrics-listen"}},
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_nonlocal_bind"); strings.TrimSpace(string(b)) == "0" {
		cases = append(cases, struct {
			name, addr string
			want       []string
		}{"not our address", "192.0.2.1:9101", []string{"192.0.2.1:9101", "no network interface"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := New(Options{}).Serve(context.Background(), c.addr)
			if err == nil {
				t.Fatal("Serve succeeded")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

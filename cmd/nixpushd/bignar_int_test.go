package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// addBigPath puts a file of size random bytes in the store and removes it
// at cleanup (it is big).
func addBigPath(t *testing.T, size int64) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nixpushd-big")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		n, _ := src.Read(buf[:min(int64(len(buf)), left)])
		f.Write(buf[:n])
		left -= int64(n)
	}
	src.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	p := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", file)))
	os.Remove(file)
	t.Cleanup(func() { testenv.RunNix(t, "nix-store", "--delete", p) })
	return p
}

// A 1 GiB NAR goes up through a link that fails three part uploads: each
// failed part is sent again on its own, so the upload completes with
// little more than the NAR's bytes on the wire; then an interrupted
// upload leaves no orphan parts in the bucket.
func TestBigNARFlakyLink(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "")
	proxy := testenv.StartProxy(t, m.Endpoint)
	url := strings.Replace(cache.S3URL, m.Endpoint, proxy.Endpoint(), 1)
	secret, _ := testenv.GenerateKey(t, t.TempDir(), "big-1")
	big := addBigPath(t, 1<<30)

	proxy.FailNext(testenv.KindPutPart, 3, 500)
	out, err := nixpushd(t, writerEnv(cache), "push", "--quiet", "--compression", "zstd", "--secret-key-file", secret, "--to", url, big)
	if err != nil {
		t.Fatalf("push through the flaky proxy: %v\n%s", err, out)
	}
	c := proxy.Counts()
	if c[testenv.KindInjected] != 3 {
		t.Fatalf("%d failures injected, want 3: %v", c[testenv.KindInjected], c)
	}
	objects := cache.Objects(t)
	var narSize int64
	for k, n := range objects {
		if strings.HasPrefix(k, "nar/") {
			narSize = n
		}
	}
	if narSize < 1<<30 {
		t.Fatalf("NAR object of %d bytes, want at least 1 GiB: %v", narSize, objects)
	}
	sent := c[testenv.BytesIn+":"+testenv.KindPutPart]
	extra := float64(sent-narSize) / float64(narSize)
	t.Logf("NAR %d bytes; %d bytes of parts sent (%.1f%% extra) in %d part uploads, %d of them failed on purpose",
		narSize, sent, 100*extra, c[testenv.KindPutPart], c[testenv.KindInjected])
	if extra > 0.10 {
		t.Errorf("re-sent %.1f%% of the NAR for 3 failed parts, want under 10%%", 100*extra)
	}
	if c[testenv.KindMultipartInit] != 1 {
		t.Errorf("%d multipart uploads started, want 1 (a failed part must not restart the object)", c[testenv.KindMultipartInit])
	}
	if out, err := nixpushd(t, writerEnv(cache), "verify", "--full", "--to", cache.S3URL); err != nil {
		t.Fatalf("verify --full: %v\n%s", err, out)
	}

	// Interrupt the same upload into a second bucket halfway: the parts
	// already sent are aborted, not left behind.
	cache2 := m.NewCache(t, "")
	url2 := strings.Replace(cache2.S3URL, m.Endpoint, proxy.Endpoint(), 1)
	proxy.Reset()
	cmd := exec.Command(bin, "push", "--quiet", "--compression", "zstd", "--to", url2, big)
	cmd.Env = append(cleanEnv(), writerEnv(cache2)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "some parts sent", func() bool { return proxy.Counts()[testenv.KindPutPart] >= 4 })
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("push exited 0 after SIGINT:\n%s", buf.String())
	}
	root := m.RootClient(t)
	var incomplete []string
	for u := range root.ListIncompleteUploads(context.Background(), cache2.Bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		incomplete = append(incomplete, u.Key+" "+u.UploadID)
	}
	if len(incomplete) > 0 {
		t.Errorf("interrupted push left multipart uploads behind: %v\n%s", incomplete, buf.String())
	}
	for k := range cache2.Objects(t) {
		if strings.HasSuffix(k, ".narinfo") {
			t.Errorf("interrupted push wrote %s", k)
		}
	}
}

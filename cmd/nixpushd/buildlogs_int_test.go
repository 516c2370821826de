package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/upload"
)

// logExpr is a derivation that prints to stdout and stderr, lines with
// and without a final newline and bytes that are not UTF-8, so that the
// log Nix keeps is worth comparing.
func logExpr(t *testing.T) string {
	seed := fmt.Sprintf("%d-%s", time.Now().UnixNano(), t.Name())
	script := `echo "building $seed"; echo to-stderr >&2; i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done; printf '\377\376 no newline'; echo x > $out`
	return fmt.Sprintf("derivation { name = \"logged\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [\"-c\" %q]; seed = %q; PATH = \"/usr/bin:/bin\"; }\n", script, seed)
}

func deriverOf(t *testing.T, out string) string {
	t.Helper()
	drv := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "-q", "--deriver", out)))
	if !strings.HasSuffix(drv, ".drv") {
		t.Fatalf("deriver of %s: %q", out, drv)
	}
	return drv
}

// assertLogConsumable checks that real Nix reads the build log of drv
// (built as out) from the cache at url as the local store has it: by the
// derivation (nix-store -l), and by the output through its narinfo's
// Deriver (nix log).
func assertLogConsumable(t *testing.T, url, drv, out string, want []byte) {
	t.Helper()
	got, err := testenv.RunNix(t, "nix-store", "--store", url, "-l", drv)
	if err != nil {
		t.Fatalf("nix-store -l from the cache: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("nix-store --store %s -l %s:\n%q\nwant (local nix-store -l):\n%q", url, drv, got, want)
	}
	got, err = testenv.RunNix(t, "nix", "log", "--store", url, out)
	if err != nil {
		t.Fatalf("nix log from the cache: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("nix log --store %s %s:\n%q\nwant:\n%q", url, out, got, want)
	}
}

// post-build-hook + daemon --build-logs: the log of a hooked build, kept
// bzip2'd by Nix (its default) or plain, reaches log/<drv> as the text
// `nix-store -l` prints, and real Nix reads it from the http cache.
func TestDaemonBuildLogs(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := m.NewCache(t, "logs")
	secret, _ := testenv.GenerateKey(t, t.TempDir(), "logs-1")
	state := t.TempDir()
	hook := filepath.Join(t.TempDir(), "nixpushd-hook")
	if err := os.Symlink(bin, hook); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NIXPUSHD_SOCKET", filepath.Join(state, "nixpushd.sock"))
	t.Setenv("NIXPUSHD_SPOOL_DIR", filepath.Join(state, "spool"))
	d := startDaemonProc(t, writerEnv(c), state, append(s3Args(c, secret), "--watch-store=false", "--reconcile-interval", "1h", "--build-logs")...)
	defer d.stop()

	for _, compress := range []string{"true", "false"} {
		t.Run("compress-build-log="+compress, func(t *testing.T) {
			out := testenv.BuildExpr(t, logExpr(t), "--option", "post-build-hook", hook, "--option", "compress-build-log", compress)[0]
			drv := deriverOf(t, out)
			kept := filepath.Join("/nix/var/log/nix/drvs", filepath.Base(drv)[:2], filepath.Base(drv)[2:])
			if compress == "true" {
				kept += ".bz2"
			}
			if _, err := os.Stat(kept); err != nil {
				t.Fatalf("Nix did not keep the log where expected: %v", err)
			}
			key := upload.BuildLogKey(drv)
			waitFor(t, 60*time.Second, "the build log in the cache", func() bool { return c.Has(t, key) && c.Has(t, narinfoKey(t, out)) })
			want := testenv.Nix(t, "nix-store", "-l", drv)
			if !bytes.Contains(want, []byte("to-stderr")) {
				t.Fatalf("local log lacks the build's output: %q", want)
			}
			if got := c.Get(t, key); !bytes.Equal(got, want) {
				t.Errorf("%s holds %q, want nix-store -l's %q", key, got, want)
			}
			info, err := c.Client(t).StatObject(context.Background(), c.Bucket, key, minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if info.ContentType != cache.TypeLog || info.Metadata.Get("Content-Encoding") != "" {
				t.Errorf("%s: Content-Type %q, Content-Encoding %q; want %q and none", key, info.ContentType, info.Metadata.Get("Content-Encoding"), cache.TypeLog)
			}
			if c.Has(t, narinfoKey(t, drv)) {
				t.Errorf("the .drv was pushed without --push-derivations")
			}
			assertLogConsumable(t, c.HTTPURL, drv, out, want)
		})
	}
	if !strings.Contains(d.out.String(), "pushed build log") {
		t.Errorf("no journal line for the build logs:\n%s", d.out.String())
	}
}

// push --build-logs uploads its root's log; without the flag there is none.
func TestPushBuildLogs(t *testing.T) {
	testenv.RequireNix(t)
	out := testenv.BuildExpr(t, logExpr(t))[0]
	drv := deriverOf(t, out)
	dir := t.TempDir()
	url := "file://" + dir
	if o, err := nixpushd(t, nil, "push", "--quiet", "--to", url, out); err != nil {
		t.Fatalf("push: %v\n%s", err, o)
	}
	if _, err := os.Stat(filepath.Join(dir, upload.BuildLogKey(drv))); err == nil {
		t.Fatal("a build log was uploaded without --build-logs")
	}
	o, err := nixpushd(t, nil, "push", "--quiet", "--build-logs", "--to", url, out)
	if err != nil {
		t.Fatalf("push --build-logs: %v\n%s", err, o)
	}
	if !strings.Contains(o, "build logs: 1 of 1 derivations") {
		t.Errorf("push did not report the log:\n%s", o)
	}
	assertLogConsumable(t, url, drv, out, testenv.Nix(t, "nix-store", "-l", drv))
}

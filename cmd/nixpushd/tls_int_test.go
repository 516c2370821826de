package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// MinIO behind https with a private CA, as the seed guides set it up:
// nixpushd needs the CA (--ca-file, or SSL_CERT_FILE) and says so in one
// line at once without it; the daemon uploads with it; gc/verify take it
// too; real Nix substitutes over https with the CA as NIX_SSL_CERT_FILE.
func TestTLSPrivateCA(t *testing.T) {
	testenv.RequireNix(t)
	m := testenv.StartMinIOTLS(t)
	cache := m.NewCache(t, "")
	dir := t.TempDir()
	secret, public := testenv.GenerateKey(t, dir, "tls-test-1")
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1, ExtraLeaves: 1})
	if !strings.HasPrefix(cache.HTTPURL, "https://") || strings.Contains(cache.S3URL, "scheme=http") {
		t.Fatalf("not an https cache: %s, %s", cache.HTTPURL, cache.S3URL)
	}

	t.Run("push without the CA", func(t *testing.T) {
		began := time.Now()
		out, err := nixpushd(t, writerEnv(cache), "push", "--quiet", "--to", cache.S3URL, "--secret-key-file", secret, cl.Mid)
		t.Logf("failed after %v:\n%s", time.Since(began).Round(time.Millisecond), out)
		assertExit(t, err, 1)
		assertLine(t, out, "certificate (for 127.0.0.1, issued by", "is not trusted", "--ca-file CA.pem", "security.pki.certificateFiles", "SSL_CERT_FILE")
		if n := len(cache.Objects(t)); n != 0 {
			t.Errorf("%d objects uploaded without a trusted certificate", n)
		}
	})

	t.Run("push with --ca-file", func(t *testing.T) {
		out, err := nixpushd(t, writerEnv(cache), "push", "--quiet", "--to", cache.S3URL, "--ca-file", m.CA.File, "--secret-key-file", secret, cl.Mid)
		if err != nil {
			t.Fatalf("push --ca-file: %v\n%s", err, out)
		}
		for _, p := range []string{cl.Mid, cl.Leaf} {
			if !cache.Has(t, narinfoKey(t, p)) {
				t.Errorf("%s not in the cache", p)
			}
		}
	})

	t.Run("push with SSL_CERT_FILE", func(t *testing.T) {
		out, err := nixpushd(t, append(writerEnv(cache), "SSL_CERT_FILE="+m.CA.File), "push", "--quiet", "--to", cache.S3URL, "--secret-key-file", secret, cl.Mid)
		if err != nil || !strings.Contains(out, " 0 uploaded") {
			t.Fatalf("push with SSL_CERT_FILE: %v\n%s", err, out)
		}
	})

	t.Run("scheme=http on an https endpoint", func(t *testing.T) {
		out, err := nixpushd(t, writerEnv(cache), "push", "--quiet", "--to", cache.S3URL+"&scheme=http", cl.Mid)
		assertExit(t, err, 1)
		assertLine(t, out, m.Endpoint+" speaks https", "remove scheme=http")
	})

	t.Run("verify with --ca-file", func(t *testing.T) {
		out, err := nixpushd(t, writerEnv(cache), "verify", "--to", cache.S3URL, "--ca-file", m.CA.File, "--trusted-public-keys", public)
		if err != nil {
			t.Fatalf("verify --ca-file: %v\n%s", err, out)
		}
	})

	t.Run("daemon with --ca-file", func(t *testing.T) {
		d := startDaemonProc(t, writerEnv(cache), "", "--to", cache.S3URL, "--ca-file", m.CA.File, "--secret-key-file", secret, "--watch-store=false")
		// Top and its extra leaf are not in the cache yet: pushes above
		// took Mid's closure only.
		if reply := d.request("PUSH " + cl.Top); !strings.HasPrefix(reply, "OK") {
			t.Fatalf("PUSH: %q", reply)
		}
		waitFor(t, 30*time.Second, "the daemon's upload", func() bool { return cache.Has(t, narinfoKey(t, cl.Top)) })
		if !cache.Has(t, narinfoKey(t, cl.Extra[0])) {
			t.Error("the daemon uploaded top before its reference")
		}
		d.stop()
	})

	// The daemon keeps running (certificates get fixed) and says why
	// nothing goes up.
	t.Run("daemon without the CA", func(t *testing.T) {
		d := startDaemonProc(t, writerEnv(cache), "", "--to", cache.S3URL, "--secret-key-file", secret, "--watch-store=false")
		waitFor(t, 30*time.Second, "the certificate error in the log", func() bool {
			return strings.Contains(d.out.String(), "is not trusted: its CA is not in the system roots")
		})
		if !d.running() {
			t.Fatalf("daemon exited:\n%s", d.out.String())
		}
		d.stop()
	})

	t.Run("nix substitutes over https", func(t *testing.T) {
		store := testenv.NewClientStore(t)
		cmd := testenv.NixCmd(t, "nix", "copy", "--from", cache.HTTPURL, "--to", store,
			"--option", "substituters", "",
			"--option", "trusted-public-keys", public,
			"--option", "require-sigs", "true",
			"--option", "secret-key-files", "",
			cl.Top)
		// Nix 2.8 has no ssl-cert-file setting (--option ssl-cert-file is
		// ignored there); NIX_SSL_CERT_FILE works in every version.
		cmd.Env = append(cmd.Env, "NIX_SSL_CERT_FILE="+m.CA.File)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nix copy --from %s: %v\n%s", cache.HTTPURL, err, out)
		}
		if err := testenv.VerifyStore(t, store, []string{public}, cl.Top, cl.Mid, cl.Leaf, cl.Extra[0]); err != nil {
			t.Error(err)
		}
	})
}

// assertExit requires the process to have exited with code.
func assertExit(t *testing.T, err error, code int) {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		t.Errorf("exit: %v, want exit status %d", err, code)
	}
}

// assertLine requires one line of out to hold every one of want: the
// problem and its fix are said together, not spread over several lines.
func assertLine(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, w := range want {
			all = all && strings.Contains(line, w)
		}
		if all {
			return
		}
	}
	t.Errorf("no line holds all of %q:\n%s", want, out)
}

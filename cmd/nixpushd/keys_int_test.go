package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// keyFile writes a secret key named name to dir/secret-key, as init
// does, and returns the file and the public key.
func keyFile(t *testing.T, dir, name string) (string, *nar.SecretKey) {
	t.Helper()
	k, err := nar.GenerateSecretKey(name)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o700)
	f := filepath.Join(dir, "secret-key")
	if err := os.WriteFile(f, []byte(k.Encode()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, k
}

func wantIn(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

// #23 §1: one rule for the key (--secret-key-file, else init's file, else
// the state directory's), said once; two different default keys refused;
// verify says when it did not check signatures; a push with a key over
// cached unsigned paths signs them ("N signed") and Nix then accepts them.
func TestKeysOneRule(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	n := len(cl.All)
	cfg, state, cacheDir := t.TempDir(), t.TempDir(), t.TempDir()
	env := []string{"CONFIGURATION_DIRECTORY=" + cfg}
	to := "file://" + cacheDir
	push := func(args ...string) (string, int) {
		_, stderr, code := runBin(t, env, append([]string{"push", "--to", to, "--state-dir", state}, append(args, cl.Top)...)...)
		return stderr, code
	}

	// No key anywhere: unsigned, said.
	out, code := push()
	if code != 0 {
		t.Fatalf("unsigned push: exit %d\n%s", code, out)
	}
	wantIn(t, "unsigned push", out, "no signing key: paths are uploaded unsigned")
	_, verr, code := runBin(t, env, "verify", "--to", to, "--state-dir", state)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, verr)
	}
	wantIn(t, "verify of an unsigned cache without keys", verr, "signatures: not checked (no --trusted-public-keys, and the cache records no keys)")

	// init's key now exists: push signs with it, and signs the cached
	// unsigned narinfos rather than calling them "already cached".
	initKey, ik := keyFile(t, cfg, "builder-a-nixpushd-1")
	out, code = push()
	if code != 0 {
		t.Fatalf("push with init's key: exit %d\n%s", code, out)
	}
	wantIn(t, "push with init's key", out,
		fmt.Sprintf(`msg="signing as builder-a-nixpushd-1 (from %s)"`, initKey),
		fmt.Sprintf("0 uploaded, 0 already cached, %d signed", n))
	if c := strings.Count(out, "signing as"); c != 1 {
		t.Errorf("'signing as' said %d times, want once:\n%s", c, out)
	}
	if o, err := testenv.CopyFrom(t, to, []string{ik.Public().String()}, cl.Top); err != nil {
		t.Fatalf("nix copy with init's key after signing: %v\n%s", err, o)
	}
	if got, err := os.ReadFile(filepath.Join(cacheDir, cachekeys.ObjectKey(ik.Name))); err != nil || string(got) != ik.Public().String()+"\n" {
		t.Errorf("cache record: %q, %v", got, err)
	}
	// Again: all cached and signed.
	out, _ = push()
	wantIn(t, "re-push", out, fmt.Sprintf("0 uploaded, %d already cached in", n))
	_, verr, code = runBin(t, env, "verify", "--to", to, "--state-dir", state)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s", code, verr)
	}
	wantIn(t, "verify with a recorded key", verr, "signatures: checked against the keys the cache records (builder-a-nixpushd-1;")

	// A different key in the state directory: refused, both named.
	stateKey, _ := keyFile(t, state, "quick-start-1")
	out, code = push()
	if code != 1 {
		t.Errorf("two default keys: exit %d, want 1\n%s", code, out)
	}
	wantIn(t, "two default keys", out, fmt.Sprintf("two default signing keys differ: %s (builder-a-nixpushd-1, written by init) and %s (quick-start-1, made by the daemon's first start); give the one clients trust with --secret-key-file", initKey, stateKey))
	// The flag settles it.
	out, code = push("--secret-key-file", stateKey)
	if code != 0 {
		t.Fatalf("push --secret-key-file: exit %d\n%s", code, out)
	}
	wantIn(t, "push --secret-key-file", out, fmt.Sprintf(`msg="signing as quick-start-1 (from %s)"`, stateKey), fmt.Sprintf("%d signed", n))
	// The same key in both places is no conflict: init's file is named.
	b, _ := os.ReadFile(initKey)
	os.WriteFile(stateKey, b, 0o600)
	out, code = push()
	if code != 0 {
		t.Fatalf("same key twice: exit %d\n%s", code, out)
	}
	wantIn(t, "same key twice", out, fmt.Sprintf(`msg="signing as builder-a-nixpushd-1 (from %s)"`, initKey))
}

// #23 §1: the cache records each key name's public key; another key of a
// recorded name is refused by push and by the daemon (which does not
// start, and leaves no key behind); Nix ignores the record; verify checks
// against it and names a narinfo signed by the other key of that name;
// a push with the right key signs that narinfo again.
func TestKeysCacheRecords(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	cache := m.NewCache(t, "keyrec")
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	dirA, dirB := t.TempDir(), t.TempDir()
	fileA, a := keyFile(t, dirA, "fleet-1")
	fileB, _ := keyFile(t, dirB, "fleet-1")
	env := append(writerEnv(cache), "CONFIGURATION_DIRECTORY="+t.TempDir())
	state := t.TempDir()

	_, out, code := runBin(t, env, "push", "--to", cache.S3URL, "--state-dir", state, "--secret-key-file", fileA, cl.Top)
	if code != 0 {
		t.Fatalf("push A: exit %d\n%s", code, out)
	}
	wantIn(t, "push A", out, "recorded the public key in the cache", "object=nixpushd/keys/fleet-1")
	if got := string(cache.Get(t, "nixpushd/keys/fleet-1")); got != a.Public().String()+"\n" {
		t.Fatalf("record = %q, want %q", got, a.Public().String()+"\n")
	}
	// Real Nix with the record in the bucket.
	if o, err := testenv.CopyFrom(t, cache.HTTPURL, []string{a.Public().String()}, cl.Top); err != nil {
		t.Fatalf("nix copy with the key record present: %v\n%s", err, o)
	}

	conflict := fmt.Sprintf("the cache %s already has a key named fleet-1 with a different public key (from another machine?): reuse that key (copy its secret key to %s), or ", cache.S3URL, fileB)
	_, out, code = runBin(t, env, "push", "--to", cache.S3URL, "--state-dir", state, "--secret-key-file", fileB, cl.Top)
	if code != 1 {
		t.Errorf("push B: exit %d, want 1\n%s", code, out)
	}
	wantIn(t, "push B", out, conflict)
	if strings.Contains(out, "pushed ") || strings.Count(out, "already has a key named") != 1 {
		t.Errorf("push B: want one refusal and no push:\n%s", out)
	}
	if got := string(cache.Get(t, "nixpushd/keys/fleet-1")); got != a.Public().String()+"\n" {
		t.Errorf("record after the refusal = %q", got)
	}

	daemon := func(dstate string, args ...string) (string, int) {
		_, stderr, code := runBin(t, append(env, testenv.NixEnv()...), append([]string{"daemon", "--to", cache.S3URL, "--state-dir", dstate,
			"--socket", filepath.Join(dstate, "s.sock"), "--watch-store=false"}, args...)...)
		return stderr, code
	}
	out, code = daemon(t.TempDir(), "--secret-key-file", fileB)
	if code != 1 || strings.Contains(out, "nixpushd ready") {
		t.Errorf("daemon with B: exit %d, want 1 before ready\n%s", code, out)
	}
	wantIn(t, "daemon with B", out, conflict)
	// The daemon's own new key, under a name the cache records already
	// (the state directory was wiped): refused, and no key file is left.
	other, _ := nar.GenerateSecretKey(keyName())
	rec := other.Public().String() + "\n"
	if _, err := cache.Client(t).PutObject(context.Background(), cache.Bucket, cachekeys.ObjectKey(keyName()), strings.NewReader(rec), int64(len(rec)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	dstate := t.TempDir()
	out, code = daemon(dstate)
	if code != 1 {
		t.Errorf("daemon with a new key of a recorded name: exit %d, want 1\n%s", code, out)
	}
	wantIn(t, "daemon with a new key", out, "already has a key named "+keyName()+" with a different public key")
	if _, err := os.Stat(filepath.Join(dstate, "secret-key")); err == nil {
		t.Error("the refused daemon left a new secret key behind")
	}

	// A narinfo signed by B (same name, other key): verify, without
	// --trusted-public-keys, checks against the records and names it.
	key := narinfoKey(t, cl.Mid)
	ni, err := nar.ParseNarInfo(cache.Get(t, key))
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := nar.LoadSecretKeyFile(fileB)
	ni.Sigs = nil
	ni.Sign(kb)
	text, _ := ni.MarshalText()
	if _, err := cache.Client(t).PutObject(context.Background(), cache.Bucket, key, bytes.NewReader(text), int64(len(text)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runBin(t, env, "verify", "--to", cache.S3URL, "--state-dir", state)
	if code != 1 {
		t.Errorf("verify: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	wantIn(t, "verify stdout", stdout, cl.Mid+": signature: no valid signature by a trusted key: signed as fleet-1, but by another public key than the trusted key of that name")
	wantIn(t, "verify stderr", stderr, "signatures: checked against the keys the cache records (fleet-1, "+keyName()+";", "1 problem (1 signature)")
	// --trusted-public-keys naming B's key under the recorded name: refused.
	_, stderr, code = runBin(t, env, "verify", "--to", cache.S3URL, "--state-dir", state, "--trusted-public-keys", kb.Public().String())
	if code != 2 {
		t.Errorf("verify with the other key: exit %d, want 2\n%s", code, stderr)
	}
	wantIn(t, "verify with the other key", stderr, "--trusted-public-keys gives "+kb.Public().String()+", but the cache records "+a.Public().String())

	// Push with A: that narinfo is signed again, the rest are cached.
	_, out, code = runBin(t, env, "push", "--to", cache.S3URL, "--state-dir", state, "--secret-key-file", fileA, cl.Top)
	if code != 0 {
		t.Fatalf("push A again: exit %d\n%s", code, out)
	}
	wantIn(t, "push A again", out, fmt.Sprintf("0 uploaded, %d already cached, 1 signed", len(cl.All)-1))
	if _, stderr, code := runBin(t, env, "verify", "--to", cache.S3URL, "--state-dir", state); code != 0 {
		t.Errorf("verify after re-signing: exit %d\n%s", code, stderr)
	}
	if o, err := testenv.CopyFrom(t, cache.HTTPURL, []string{a.Public().String()}, cl.Top); err != nil {
		t.Fatalf("nix copy after re-signing: %v\n%s", err, o)
	}
}

// #23 §1: init names a new key HOST-nixpushd-1 and records it in the
// cache; a second builder's init making another key of that name is
// refused before it writes a key file.
func TestKeysInit(t *testing.T) {
	m := requireMinIO(t)
	bucket, writer := initRandName("keys-"), initRandName("nb-")
	s3URL := fmt.Sprintf("s3://%s?endpoint=%s&scheme=http", bucket, m.Endpoint)
	_, key, creds := initFiles(t)
	out, err := nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--create-bucket", "--writer-user", writer, "--secret-key-file", key, "--credentials-file", creds, "--quiet")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	steps := initStepLines(out)
	if want := "created: " + key + " (" + keyName() + ")"; steps["signing key"] != want {
		t.Errorf("signing key step %q, want %q", steps["signing key"], want)
	}
	if !strings.HasSuffix(keyName(), "-nixpushd-1") || steps["key in the cache"] != "created: nixpushd/keys/"+keyName() {
		t.Errorf("key in the cache step %q (name %s)", steps["key in the cache"], keyName())
	}
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--writer-user", writer, "--secret-key-file", key, "--credentials-file", creds, "--quiet")
	if err != nil || initStepLines(out)["key in the cache"] != "ok (exists): nixpushd/keys/"+keyName() {
		t.Errorf("second init: %v\n%s", err, out)
	}

	// Another builder, same host name (or init run as another user).
	_, key2, creds2 := initFiles(t)
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--writer-user", writer, "--secret-key-file", key2, "--credentials-file", creds2, "--quiet")
	if initExitCode(err) != 1 {
		t.Errorf("second builder's init: exit %d, want 1\n%s", initExitCode(err), out)
	}
	wantIn(t, "second builder's init", out, "nixpushd: init: the cache "+s3URL+" already has a key named "+keyName()+" with a different public key (from another machine?): reuse that key (copy its secret key here) or pick a new name with --key-name")
	if _, err := os.Stat(key2); err == nil {
		t.Error("the refused init wrote a key file")
	}
	// With --key-name it goes through.
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--writer-user", writer, "--secret-key-file", key2, "--credentials-file", creds2, "--key-name", "second-1", "--quiet")
	if steps := initStepLines(out); steps["key in the cache"] != "created: nixpushd/keys/second-1" {
		t.Errorf("init --key-name second-1: %v\n%s", err, out)
	}
}

// #23 §1, §3: the hint for a missing key never overwrites a key (run as
// printed, it fails on an existing file and leaves it alone); the daemon's
// status says which key it signs with, running or not.
func TestKeysHintAndStatus(t *testing.T) {
	testenv.RequireNix(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	dir := t.TempDir()
	missing := filepath.Join(dir, "keys", "secret-key")
	_, stderr, code := runBin(t, nil, "push", "--to", "file://"+t.TempDir(), "--state-dir", t.TempDir(), "--secret-key-file", missing, cl.Top)
	m := regexp.MustCompile(`create it with (\(umask 077; set -o noclobber; .*\))`).FindStringSubmatch(stderr)
	if code != 1 || m == nil {
		t.Fatalf("missing key: exit %d, no creation hint:\n%s", code, stderr)
	}
	run := func() error {
		c := exec.Command("sh", "-c", m[1])
		c.Env = append(cleanEnv(), testenv.NixEnv()...)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := run(); err != nil {
		t.Fatalf("the hint, run as printed: %v", err)
	}
	first, _ := os.ReadFile(missing)
	if _, err := nar.ParseSecretKey(string(first)); err != nil {
		t.Fatalf("the hint wrote no key: %v", err)
	}
	if err := run(); err == nil {
		t.Error("the hint, run again, succeeded over the existing key")
	}
	if again, _ := os.ReadFile(missing); !bytes.Equal(again, first) {
		t.Error("the hint, run again, changed the key")
	}

	secret, k := keyFile(t, filepath.Join(dir, "etc"), "status-1")
	d := startDaemonProc(t, []string{"CONFIGURATION_DIRECTORY=" + t.TempDir()}, "", "--to", "file://"+t.TempDir(), "--secret-key-file", secret, "--watch-store=false")
	wantIn(t, "daemon log", d.out.String(), fmt.Sprintf(`msg="signing as status-1 (from %s)"`, secret))
	stdout, _, code := runBin(t, nil, "status", "--socket", d.socket, "--state-dir", d.state)
	if code != 0 {
		t.Fatalf("status: exit %d", code)
	}
	wantIn(t, "status of the running daemon", stdout, fmt.Sprintf("signing as status-1 (from %s)\npublic key: %s\n", secret, k.Public()))
	d.stop()
	stdout, _, _ = runBin(t, []string{"CONFIGURATION_DIRECTORY=" + t.TempDir()}, "status", "--socket", d.socket, "--state-dir", d.state, "--secret-key-file", secret)
	wantIn(t, "status, daemon stopped", stdout, "daemon not running", fmt.Sprintf("signing (daemon not running): it would sign as status-1 (from %s)", secret))
	stdout, _, _ = runBin(t, []string{"CONFIGURATION_DIRECTORY=" + t.TempDir()}, "status", "--socket", d.socket, "--state-dir", d.state)
	wantIn(t, "status, daemon stopped, no key", stdout, "signing (daemon not running): no key yet; it would create "+filepath.Join(d.state, "secret-key")+" on its first start")
}

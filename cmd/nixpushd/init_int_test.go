package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/provision"
	"github.com/nixpushd/nixpushd/provision/policy"
)

func initRandName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func initRootEnv(m *testenv.MinIO) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=" + m.RootPassword}
}

// initFiles are the two secrets init writes, in a fresh directory that
// does not exist yet (init creates it 0700).
func initFiles(t *testing.T) (dir, key, creds string) {
	dir = filepath.Join(t.TempDir(), "etc-nixpushd")
	return dir, filepath.Join(dir, "secret-key"), filepath.Join(dir, "aws-credentials")
}

// initStepLines returns init's step lines ("  NAME   STATUS…"), by name.
func initStepLines(out string) map[string]string {
	lines := map[string]string{}
	_, after, _ := strings.Cut(out, "Setting up ")
	rest := strings.Split(after, "\n")[1:]
	for _, l := range rest {
		if !strings.HasPrefix(l, "  ") || len(l) <= 2+stepWidth {
			break // the summary line ends the steps
		}
		lines[strings.TrimSpace(l[:2+stepWidth])] = strings.TrimSpace(l[2+stepWidth:])
	}
	return lines
}

func initExitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func initReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// From nothing to a substitution: init sets up bucket, user, policy, key
// and credentials; push uses exactly what init wrote; real Nix substitutes
// with the key init printed; a second init changes nothing.
func TestInitFromZero(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	bucket, writer := initRandName("init-"), initRandName("nb-")
	dir, key, creds := initFiles(t)
	s3URL := fmt.Sprintf("s3://%s?endpoint=%s&scheme=http", bucket, m.Endpoint)
	args := []string{"init", "--to", s3URL, "--public", "--create-bucket", "--writer-user", writer,
		"--key-name", "init-test-1", "--secret-key-file", key, "--credentials-file", creds}

	out, err := nixpushd(t, initRootEnv(m), args...)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	t.Logf("first init:\n%s", out)
	policyName := bucket + "-write"
	steps := initStepLines(out)
	for _, name := range []string{"bucket " + bucket, "nix-cache-info", "anonymous download", "signing key", "key in the cache",
		"policy " + policyName, "writer user " + writer, "policy attached to " + writer} {
		if !strings.HasPrefix(steps[name], provision.StatusCreated) {
			t.Errorf("first init, step %q: %q, want %s", name, steps[name], provision.StatusCreated)
		}
	}
	if !strings.Contains(out, "8 steps changed.") {
		t.Errorf("first init does not say it changed 8 steps:\n%s", out)
	}

	// The files: 0600 in a 0700 directory, in the formats push reads.
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, key: 0o600, creds: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode()&(os.ModePerm|os.ModeDir) != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, st.Mode(), mode)
		}
	}
	vars, err := loadEnvFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	secret := vars["AWS_SECRET_ACCESS_KEY"]
	if vars["AWS_ACCESS_KEY_ID"] != writer || len(secret) < 20 {
		t.Fatalf("credentials file: key %q and a %d-character secret, want %s and a long secret", vars["AWS_ACCESS_KEY_ID"], len(secret), writer)
	}
	for what, s := range map[string]string{"the writer's secret": secret, "the admin secret": m.RootPassword, "the signing key": strings.TrimPrefix(strings.TrimSpace(initReadFile(t, key)), "init-test-1:")} {
		if strings.Contains(out, s) {
			t.Errorf("init printed %s", what)
		}
	}
	pub := regexp.MustCompile(`(?m)^Public key: (init-test-1:\S+)$`).FindStringSubmatch(out)
	if pub == nil {
		t.Fatalf("no public key in the output:\n%s", out)
	}
	subst := m.URL + "/" + bucket
	for _, want := range []string{
		fmt.Sprintf(`extra-substituters = [ %q ];`, subst),
		fmt.Sprintf(`extra-trusted-public-keys = [ %q ];`, pub[1]),
		fmt.Sprintf(`cache.url = %q;`, s3URL),
		fmt.Sprintf(`credentialsFile = %q;`, creds),
		fmt.Sprintf(`secretKeyFile = %q;`, key),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}

	// The server side, as mc sees it.
	if got := string(m.Get(t, bucket, "nix-cache-info")); got != cache.CacheInfo {
		t.Errorf("nix-cache-info = %q, want %q", got, cache.CacheInfo)
	}
	if anon := m.MC(t, "anonymous", "get", testenv.MCAlias+"/"+bucket); !strings.Contains(string(anon), "`download`") {
		t.Errorf("mc anonymous get: %s, want download", anon)
	}
	policyInfo := func() initPolicyOnServer {
		var p initPolicyOnServer
		out := m.MC(t, "admin", "policy", "info", testenv.MCAlias, policyName)
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("mc admin policy info: %v\n%s", err, out)
		}
		return p
	}
	onServer := policyInfo()
	if !policy.Same(onServer.Policy, policy.Writer(bucket, writer), false) {
		t.Errorf("policy %s on the server is not the seed policy: %s", policyName, onServer.Policy)
	}
	userInfo := string(m.MC(t, "admin", "user", "info", testenv.MCAlias, writer, "--json"))
	if !strings.Contains(userInfo, `"policyName":"`+policyName+`"`) {
		t.Errorf("user %s: %s, want only policy %s attached", writer, userInfo, policyName)
	}

	// push with what init wrote, and nothing from the environment.
	closure := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	if out, err := nixpushd(t, nil, "push", "--to", s3URL, "--credentials-file", creds, "--secret-key-file", key, closure.Top); err != nil {
		t.Fatalf("push with init's credentials and key: %v\n%s", err, out)
	}
	if out, err := testenv.CopyFrom(t, subst, []string{pub[1]}, closure.Top); err != nil {
		t.Fatalf("nix copy --from %s with the printed key: %v\n%s", subst, err, out)
	}

	// The writer is least-privilege: it cannot delete.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.Client(t, writer, secret).RemoveObject(ctx, bucket, narinfoKey(t, closure.Top), minio.RemoveObjectOptions{})
	if minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("the writer deleting a narinfo: %v, want AccessDenied", err)
	}
	if !m.Has(t, bucket, narinfoKey(t, closure.Top)) {
		t.Error("the writer deleted a narinfo")
	}

	// Again: nothing changes, and it says so.
	keyBefore, credsBefore, objectsBefore := initReadFile(t, key), initReadFile(t, creds), m.Objects(t, bucket)
	out, err = nixpushd(t, initRootEnv(m), args...)
	if err != nil {
		t.Fatalf("second init: %v\n%s", err, out)
	}
	t.Logf("second init:\n%s", out)
	steps = initStepLines(out)
	if len(steps) != 8 {
		t.Errorf("second init shows %d steps, want 8:\n%s", len(steps), out)
	}
	for name, status := range steps {
		if !strings.HasPrefix(status, provision.StatusExists) {
			t.Errorf("second init, step %q: %q, want %s", name, status, provision.StatusExists)
		}
	}
	if !strings.Contains(out, "Nothing changed") || !strings.Contains(out, pub[1]) {
		t.Errorf("second init does not say nothing changed, or prints another key:\n%s", out)
	}
	if initReadFile(t, key) != keyBefore || initReadFile(t, creds) != credsBefore {
		t.Error("second init changed the key or credentials file")
	}
	// MinIO lists a policy's actions in a random order: compare what it
	// grants and when it was last written.
	if got := policyInfo(); got.UpdateDate != onServer.UpdateDate || !policy.Same(got.Policy, onServer.Policy, true) {
		t.Errorf("second init changed the policy: %s, updated %s; was %s, updated %s", got.Policy, got.UpdateDate, onServer.Policy, onServer.UpdateDate)
	}
	if got := m.Objects(t, bucket); fmt.Sprint(got) != fmt.Sprint(objectsBefore) {
		t.Errorf("second init changed the bucket: %v, was %v", got, objectsBefore)
	}

	// The user exists but this machine has no credentials file: say what
	// to do, and change nothing.
	other := filepath.Join(t.TempDir(), "aws-credentials")
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--public", "--writer-user", writer, "--secret-key-file", key, "--credentials-file", other)
	if initExitCode(err) != 1 || !strings.Contains(out, "nixpushd: init: writer user "+writer+" exists but "+other+" does not: copy that file") {
		t.Errorf("init without the writer's credentials file: %v\n%s", err, out)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("init wrote %s for an existing user: %v", other, err)
	}
	// --new-writer-secret is the way out: a new secret, the old one dead.
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--public", "--writer-user", writer, "--secret-key-file", key, "--credentials-file", other, "--new-writer-secret", "--quiet")
	if err != nil || !strings.HasPrefix(initStepLines(out)["writer user "+writer], provision.StatusUpdated) {
		t.Fatalf("init --new-writer-secret: %v\n%s", err, out)
	}
	newVars, err := loadEnvFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if newVars["AWS_SECRET_ACCESS_KEY"] == secret || newVars["AWS_ACCESS_KEY_ID"] != writer {
		t.Errorf("--new-writer-secret wrote %s for %q with the old secret", other, newVars["AWS_ACCESS_KEY_ID"])
	}
	// Again, now that the file exists: refused without --force, the file
	// and the secret on the server unchanged.
	newBytes := initReadFile(t, other)
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--public", "--writer-user", writer, "--secret-key-file", key, "--credentials-file", other, "--new-writer-secret", "--quiet")
	if want := "nixpushd: init: --new-writer-secret would overwrite " + other + " (the keys of " + writer + "): add --force to replace that file, or pass another --credentials-file\n"; initExitCode(err) != 1 || !strings.HasSuffix(out, want) {
		t.Errorf("init --new-writer-secret over an existing file: exit %d, want 1 and %q:\n%s", initExitCode(err), want, out)
	}
	if initReadFile(t, other) != newBytes {
		t.Errorf("init --new-writer-secret without --force changed %s", other)
	}
	out, err = nixpushd(t, initRootEnv(m), "init", "--to", s3URL, "--public", "--writer-user", writer, "--secret-key-file", key, "--credentials-file", other, "--new-writer-secret", "--force", "--quiet")
	if err != nil || !strings.HasPrefix(initStepLines(out)["writer user "+writer], provision.StatusUpdated) || initReadFile(t, other) == newBytes {
		t.Fatalf("init --new-writer-secret --force: %v, file changed %v\n%s", err, initReadFile(t, other) != newBytes, out)
	}
	out, err = nixpushd(t, initRootEnv(m), args...)
	if initExitCode(err) != 1 || !strings.Contains(out, "nixpushd: init: the server rejects the keys of "+writer+" in "+creds+" (wrong secret)") {
		t.Errorf("init with the old secret: %v\n%s", err, out)
	}

	// A nix-cache-info that differs is kept, unless --force.
	priority := "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 10\n"
	if _, err := m.RootClient(t).PutObject(ctx, bucket, "nix-cache-info", strings.NewReader(priority), int64(len(priority)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		force   bool
		status  string
		content string
	}{{false, provision.StatusKept, priority}, {true, provision.StatusUpdated, cache.CacheInfo}} {
		a := []string{"init", "--to", s3URL, "--writer-user", writer, "--secret-key-file", key, "--credentials-file", other, "--quiet"}
		if tt.force {
			a = append(a, "--force")
		}
		out, err := nixpushd(t, initRootEnv(m), a...)
		if err != nil || !strings.HasPrefix(initStepLines(out)["nix-cache-info"], tt.status) {
			t.Errorf("init (force %v) with another nix-cache-info: %v, want %s\n%s", tt.force, err, tt.status, out)
		}
		// Without --public, a bucket that already is stays public.
		if s := initStepLines(out)["anonymous download"]; !strings.HasPrefix(s, provision.StatusExists) {
			t.Errorf("init without --public on a public bucket: anonymous download %q, want %s", s, provision.StatusExists)
		}
		if got := string(m.Get(t, bucket, "nix-cache-info")); got != tt.content {
			t.Errorf("init (force %v): nix-cache-info = %q, want %q", tt.force, got, tt.content)
		}
	}
}

// initPolicyOnServer is what `mc admin policy info` prints.
type initPolicyOnServer struct {
	Policy     json.RawMessage
	UpdateDate string
}

// Wrong admin credentials, a wrong endpoint, a bucket the credentials may
// not use: one line naming the problem and the fix, exit status 1, and
// nothing written.
func TestInitErrors(t *testing.T) {
	m := requireMinIO(t)
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// A user without rights on an existing bucket.
	taken := initRandName("taken-")
	stranger, strangerSecret := initRandName("stranger-"), initRandName("s3cret-")
	m.MC(t, "mb", testenv.MCAlias+"/"+taken)
	m.MC(t, "admin", "user", "add", testenv.MCAlias, stranger, strangerSecret)
	// A user who may use every bucket but not administer MinIO.
	user, userSecret := initRandName("rw-"), initRandName("s3cret-")
	m.MC(t, "admin", "user", "add", testenv.MCAlias, user, userSecret)
	m.MC(t, "admin", "policy", "attach", testenv.MCAlias, "readwrite", "--user", user)

	s3url := func(bucket, endpoint string) string {
		return fmt.Sprintf("s3://%s?endpoint=%s&scheme=http", bucket, endpoint)
	}
	fresh := initRandName("init-err-")
	tests := []struct {
		name string
		env  []string
		to   string
		want string
	}{
		{"wrong admin secret", []string{"AWS_ACCESS_KEY_ID=" + m.RootUser, "AWS_SECRET_ACCESS_KEY=not-the-password"}, s3url(fresh, m.Endpoint),
			fmt.Sprintf("nixpushd: init: wrong secret for the admin access key %q (from AWS_ACCESS_KEY_ID)", m.RootUser)},
		{"unknown admin", []string{"AWS_ACCESS_KEY_ID=nobody-here", "AWS_SECRET_ACCESS_KEY=not-the-password"}, s3url(fresh, m.Endpoint),
			`nixpushd: init: the S3 server ` + m.Endpoint + ` does not know the admin access key "nobody-here"`},
		{"wrong endpoint", initRootEnv(m), s3url(fresh, closed),
			"nixpushd: init: cannot connect to the S3 server " + closed + " (connection refused): check endpoint= in --to"},
		{"https to an http server", initRootEnv(m), strings.TrimSuffix(s3url(fresh, m.Endpoint), "&scheme=http"),
			"nixpushd: init: " + m.Endpoint + " speaks plain http, not https: add &scheme=http to the --to URL"},
		{"a bucket of someone else", []string{"AWS_ACCESS_KEY_ID=" + stranger, "AWS_SECRET_ACCESS_KEY=" + strangerSecret}, s3url(taken, m.Endpoint),
			"nixpushd: init: the admin credentials (" + stranger + ", from AWS_ACCESS_KEY_ID) may not use bucket " + taken + " (another account's bucket"},
		{"a bucket that does not exist, without --create-bucket", initRootEnv(m), s3url(fresh, m.Endpoint),
			"nixpushd: init: bucket " + fresh + " does not exist on " + m.Endpoint + ": check the bucket name in --to, or add --create-bucket to create it"},
		{"not a MinIO admin", []string{"AWS_ACCESS_KEY_ID=" + user, "AWS_SECRET_ACCESS_KEY=" + userSecret}, s3url(fresh, m.Endpoint),
			"nixpushd: init: the admin credentials (" + user + ", from AWS_ACCESS_KEY_ID) may not manage users on this MinIO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, key, creds := initFiles(t)
			out, err := nixpushd(t, tt.env, "init", "--to", tt.to, "--public", "--secret-key-file", key, "--credentials-file", creds)
			if initExitCode(err) != 1 {
				t.Errorf("exit status %d, want 1:\n%s", initExitCode(err), out)
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.HasPrefix(l, "nixpushd:") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.HasPrefix(errLines[0], tt.want) {
				t.Errorf("error lines %q, want one starting with %q; output:\n%s", errLines, tt.want, out)
			}
			if strings.Contains(out, "not-the-password") || strings.Contains(out, strangerSecret) || strings.Contains(out, userSecret) || strings.Contains(out, m.RootPassword) {
				t.Errorf("the output shows a secret:\n%s", out)
			}
			for _, f := range []string{key, creds} {
				if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was written: %v", f, err)
				}
			}
		})
	}
	if !strings.Contains(string(m.MC(t, "ls", testenv.MCAlias)), taken) || strings.Contains(string(m.MC(t, "ls", testenv.MCAlias)), fresh) {
		t.Errorf("the failed inits created bucket %s", fresh)
	}
}

// On an S3 server without MinIO's admin API, init does the S3 side and
// prints the writer policy to apply by hand; once the operator has made
// the user and its credentials file, a re-run checks them.
func TestInitNotMinIO(t *testing.T) {
	m := requireMinIO(t)
	// In front of MinIO, a server that takes /minio/… for a bucket that
	// does not exist, as Ceph's RGW does.
	target, _ := url.Parse(m.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/minio/") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>minio</BucketName></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer srv.Close()
	endpoint := strings.TrimPrefix(srv.URL, "http://")

	bucket, writer := initRandName("init-ceph-"), initRandName("nb-")
	_, key, creds := initFiles(t)
	args := []string{"init", "--to", fmt.Sprintf("s3://%s?endpoint=%s&scheme=http", bucket, endpoint),
		"--create-bucket", "--writer-user", writer, "--secret-key-file", key, "--credentials-file", creds}
	out, err := nixpushd(t, initRootEnv(m), args...)
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	steps := initStepLines(out)
	for name, want := range map[string]string{
		"bucket " + bucket:      provision.StatusCreated,
		"anonymous download":    provision.StatusSkipped,
		"writer policy":         provision.StatusManual,
		"writer user " + writer: provision.StatusManual,
	} {
		if !strings.HasPrefix(steps[name], want) {
			t.Errorf("step %q: %q, want %s\n%s", name, steps[name], want, out)
		}
	}
	if !strings.Contains(out, `"arn:aws:s3:::`+bucket+`/*"`) || !strings.Contains(out, `"s3:PutObject"`) || strings.Contains(out, `"Principal":`) {
		t.Errorf("the policy to apply by hand is not printed, or has a Principal:\n%s", out)
	}
	if _, err := os.Stat(creds); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("init wrote credentials for a user it could not create: %v", err)
	}
	// Private bucket: clients read it as an S3 store.
	if !strings.Contains(out, "The bucket is not public") {
		t.Errorf("no word that clients need credentials:\n%s", out)
	}

	// The operator does it by hand, as printed.
	secret := initRandName("secret-")
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policyFile, policy.Identity(bucket), 0o600); err != nil {
		t.Fatal(err)
	}
	m.MC(t, "admin", "user", "add", testenv.MCAlias, writer, secret)
	m.MC(t, "admin", "policy", "create", testenv.MCAlias, bucket+"-write", policyFile)
	m.MC(t, "admin", "policy", "attach", testenv.MCAlias, bucket+"-write", "--user", writer)
	if err := os.WriteFile(creds, []byte("AWS_ACCESS_KEY_ID="+writer+"\nAWS_SECRET_ACCESS_KEY="+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = nixpushd(t, initRootEnv(m), args...)
	if err != nil {
		t.Fatalf("second init: %v\n%s", err, out)
	}
	if s := initStepLines(out)["writer user "+writer]; !strings.HasPrefix(s, provision.StatusExists) || !strings.Contains(s, "work") {
		t.Errorf("writer step after the manual setup: %q\n%s", s, out)
	}
	if !strings.Contains(out, "Nothing changed") {
		t.Errorf("second init changed something:\n%s", out)
	}
}

// On a terminal, init asks before it creates a missing bucket: no makes
// nothing, yes creates it.
func TestInitAsksOnATerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script (util-linux) not installed: no pseudo-terminal to test with")
	}
	m := requireMinIO(t)
	bucket := initRandName("init-ask-")
	for _, tc := range []struct {
		answer string
		code   int
	}{{"n", 1}, {"y", 0}} {
		_, key, creds := initFiles(t)
		line := shellQuote(bin) + " init --quiet --to " + shellQuote(fmt.Sprintf("s3://%s?endpoint=%s&scheme=http", bucket, m.Endpoint)) +
			" --writer-user " + initRandName("nb-") + " --secret-key-file " + shellQuote(key) + " --credentials-file " + shellQuote(creds)
		cmd := exec.Command("script", "-qec", line, "/dev/null")
		cmd.Env = append(cleanEnv(), initRootEnv(m)...)
		cmd.Stdin = strings.NewReader(tc.answer + "\n")
		out, err := cmd.CombinedOutput()
		if initExitCode(err) != tc.code || !strings.Contains(string(out), "Bucket "+bucket+" does not exist on "+m.Endpoint+". Create it? [y/N]") {
			t.Errorf("answer %q: exit %d, want %d and the question:\n%s", tc.answer, initExitCode(err), tc.code, out)
		}
		created := strings.Contains(string(m.MC(t, "ls", testenv.MCAlias)), bucket)
		if created != (tc.answer == "y") {
			t.Errorf("answer %q: bucket created %v", tc.answer, created)
		}
	}
}

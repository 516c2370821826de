package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nixpushd/nixpushd/provision/policy"
)

const (
	// MCAlias is the mc alias (root credentials) that MC commands can use,
	// e.g. m.MC(t, "ls", testenv.MCAlias+"/bucket").
	MCAlias = "nixtest"
	// Region is what clients should sign with; MinIO's default region.
	Region = "us-east-1"

	readyTimeout = 60 * time.Second
	stopGrace    = 15 * time.Second
	opTimeout    = 2 * time.Minute
)

// MinIO is a real MinIO server on 127.0.0.1 owned by the test.
type MinIO struct {
	Endpoint               string // "127.0.0.1:PORT"
	URL                    string // "http://127.0.0.1:PORT" ("https://" with CA)
	RootUser, RootPassword string
	Dir                    string // data dir; survives Stop/Restart
	LogFile                string // server output, appended across restarts
	// StartTime is how long the last start or restart took until
	// /minio/health/ready answered 200.
	StartTime time.Duration
	// CA signed the server's certificate (for 127.0.0.1 only) when
	// StartMinIOTLS started it; nil for plain http. CA.File is what
	// --ca-file, SSL_CERT_FILE or Nix's ssl-cert-file take.
	CA *CA

	base       string // holds Dir, LogFile, HOME, certs and mc config
	bin, mcBin string
	mu         sync.Mutex
	proc       *minioProc
	clientMu   sync.Mutex
	clients    map[string]*s3Client // by access key + secret
}

// s3Client pairs a minio-go client with its transport, whose idle
// keep-alive connections (and their goroutines) we close on Stop and at
// test cleanup.
type s3Client struct {
	c  *minio.Client
	tr *http.Transport
}

// minioProc is one run of the server; err is set before done is closed.
type minioProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// minioTools finds both binaries: tests that start MinIO also set buckets
// up with mc, so one without the other is as good as neither.
func minioTools() (minioBin, mcBin string, err error) {
	if minioBin, err = findTool("MINIO_BIN", "minio"); err != nil {
		return "", "", err
	}
	if mcBin, err = findTool("MC_BIN", "mc"); err != nil {
		return "", "", err
	}
	return minioBin, mcBin, nil
}

// HaveMinIO reports whether the minio and mc binaries can be found.
func HaveMinIO() bool {
	_, _, err := minioTools()
	return err == nil
}

// RequireMinIO skips the test when minio or mc is missing, or fails it
// under CI=true (or when MINIO_BIN/MC_BIN point nowhere).
func RequireMinIO(t testing.TB) {
	t.Helper()
	if _, _, err := minioTools(); err != nil {
		missing(t, err)
	}
}

// StartMinIO starts a server for one test; it is stopped (and its data
// removed) at the test's cleanup.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	return startMinIO(t, false)
}

// StartMinIOTLS is StartMinIO serving https only, as the seed guides set
// MinIO up: a private CA (m.CA) made for this server signs a certificate
// for 127.0.0.1, which MinIO reads from its --certs-dir. mc, Client and
// the readiness probe trust that CA; nixpushd and Nix must be told.
func StartMinIOTLS(t testing.TB) *MinIO {
	t.Helper()
	return startMinIO(t, true)
}

func startMinIO(t testing.TB, useTLS bool) *MinIO {
	t.Helper()
	RequireMinIO(t)
	// TempDir first: its removal is then the last cleanup, after Stop.
	m, err := launch(t.TempDir(), useTLS)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return m
}

// StartMinIOMain starts a server for a whole test binary (from TestMain).
// The returned func stops it and removes its temp dir; it is never nil and
// safe to call more than once. A missing binary gives an error wrapping
// ErrNotInstalled.
func StartMinIOMain() (*MinIO, func(), error) {
	noop := func() {}
	if _, _, err := minioTools(); err != nil {
		return nil, noop, err
	}
	base, err := os.MkdirTemp("", "nixpushd-minio-")
	if err != nil {
		return nil, noop, err
	}
	m, err := launch(base, false)
	if err != nil {
		_ = os.RemoveAll(base)
		return nil, noop, err
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := m.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			}
			_ = os.RemoveAll(base)
		})
	}
	return m, stop, nil
}

// RunWithMinIO is a whole TestMain body:
//
//	var srv *testenv.MinIO
//	func TestMain(m *testing.M) { os.Exit(testenv.RunWithMinIO(m, &srv)) }
//
// It starts MinIO into *srv, runs the tests and stops it. When MinIO is not
// installed and CI is not set, *srv stays nil and the tests still run: each
// one that needs the server must call RequireMinIO(t) first, which skips.
// Under CI, or when MinIO is installed but fails to start, it returns 1
// without running any test.
func RunWithMinIO(m *testing.M, srv **MinIO) int {
	s, stop, err := StartMinIOMain()
	defer stop()
	if err != nil {
		if CI() || !errors.Is(err, ErrNotInstalled) {
			fmt.Fprintf(os.Stderr, "testenv: starting MinIO: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "testenv: %v; tests that need MinIO will be skipped\n", err)
	}
	*srv = s
	return m.Run()
}

// launch prepares base and starts the server on a random free port,
// retrying if another process grabs the port between our probe and bind.
// With useTLS it serves https with a certificate from a fresh CA.
func launch(base string, useTLS bool) (*MinIO, error) {
	bin, mcBin, err := minioTools()
	if err != nil {
		return nil, err
	}
	m := &MinIO{
		RootUser:     "nixpushd-root",
		RootPassword: randHex(16),
		Dir:          filepath.Join(base, "data"),
		LogFile:      filepath.Join(base, "minio.log"),
		base:         base,
		bin:          bin,
		mcBin:        mcBin,
	}
	for _, d := range []string{m.Dir, m.homeDir(), m.certsDir(), m.mcConfigDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if useTLS {
		if err := m.makeCerts(); err != nil {
			return nil, fmt.Errorf("testenv: certificates for minio: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		m.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		m.URL = m.scheme() + "://" + m.Endpoint
		err = m.start()
		if err == nil {
			return m, nil
		}
		if attempt == 2 || !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
	}
}

// makeCerts makes m.CA and the server's certificate for 127.0.0.1 in the
// certs dir, and has mc trust the CA (MC_CONFIG_DIR/certs/CAs).
func (m *MinIO) makeCerts() error {
	ca, err := newCA(m.base, "nixpushd MinIO CA")
	if err != nil {
		return err
	}
	cert, err := ca.issue(CertOpts{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return err
	}
	if err := cert.WriteMinIO(m.certsDir()); err != nil {
		return err
	}
	mcCAs := filepath.Join(m.mcConfigDir(), "certs", "CAs")
	if err := os.MkdirAll(mcCAs, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mcCAs, "ca.crt"), ca.PEM, 0o644); err != nil {
		return err
	}
	m.CA = ca
	return nil
}

func (m *MinIO) scheme() string {
	if m.CA != nil {
		return "https"
	}
	return "http"
}

// tlsConfig trusts m.CA only; nil for plain http.
func (m *MinIO) tlsConfig() *tls.Config {
	if m.CA == nil {
		return nil
	}
	return &tls.Config{RootCAs: m.CA.Pool, MinVersion: tls.VersionTLS12}
}

func (m *MinIO) homeDir() string     { return filepath.Join(m.base, "home") }
func (m *MinIO) certsDir() string    { return filepath.Join(m.base, "certs") }
func (m *MinIO) mcConfigDir() string { return filepath.Join(m.base, "mc") }

// freePort asks the kernel for a free loopback port. Another process may
// take it before MinIO binds; launch retries for that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withoutPrefix drops inherited variables that would change how a tool
// behaves (a developer's MINIO_* or MC_HOST_* must not leak in).
func withoutPrefix(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// start runs the server on m.Endpoint and m.Dir and waits until ready.
func (m *MinIO) start() error {
	m.mu.Lock()
	if m.proc != nil {
		m.mu.Unlock()
		return errors.New("testenv: minio is already running")
	}
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "==== testenv: starting minio on %s at %s\n", m.Endpoint, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(m.bin, "server",
		"--address", m.Endpoint,
		// Otherwise MinIO creates ~/.minio/certs.
		"--certs-dir", m.certsDir(),
		m.Dir)
	cmd.Env = append(withoutPrefix(os.Environ(), "MINIO_"),
		"MINIO_ROOT_USER="+m.RootUser,
		"MINIO_ROOT_PASSWORD="+m.RootPassword,
		// No web console (it would listen on another random port) and no
		// update checks (no network).
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"HOME="+m.homeDir())
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGKILL on our death is fine: the data dir is a throwaway.
	cmd.SysProcAttr = childAttr(syscall.SIGKILL)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		m.mu.Unlock()
		return fmt.Errorf("testenv: starting %s: %w", m.bin, err)
	}
	p := &minioProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	m.proc = p
	m.mu.Unlock()

	if err := m.waitReady(p); err != nil {
		m.mu.Lock()
		m.proc = nil
		m.mu.Unlock()
		_ = p.stop(stopGrace)
		return err
	}
	m.StartTime = time.Since(began)
	return nil
}

// waitReady polls until the server really serves, noticing early exits.
// /minio/health/ready alone is not enough: it answers 200 (with
// x-minio-server-status: unavailable) before the object layer is up, and
// IAM users load later still, so a restarted server briefly answers
// XMinioServerNotInitialized / XMinioIAMNotInitialized (503).
func (m *MinIO) waitReady(p *minioProc) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := m.probe()
		select {
		case <-p.done:
			// Also catches a stranger who answered on a port we lost.
			return fmt.Errorf("testenv: minio exited before it was ready (%v); log:\n%s",
				p.err, tailFile(m.LogFile, 4000))
		default:
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: minio on %s not ready after %v (%v); log:\n%s",
				m.Endpoint, readyTimeout, err, tailFile(m.LogFile, 4000))
		}
		select {
		case <-p.done:
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// probe returns nil once health, the object layer and IAM all answer.
func (m *MinIO) probe() error {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: m.tlsConfig()}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/minio/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Minio-Server-Status") == "unavailable" {
		return fmt.Errorf("health/ready: %s %s", resp.Status, resp.Header.Get("X-Minio-Server-Status"))
	}

	client := func(ak, sk string) (*minio.Client, error) {
		return minio.New(m.Endpoint, &minio.Options{
			Creds: credentials.NewStaticV4(ak, sk, ""), Region: Region, Transport: tr, MaxRetries: 1, Secure: m.CA != nil,
		})
	}
	root, err := client(m.RootUser, m.RootPassword)
	if err != nil {
		return err
	}
	if _, err := root.ListBuckets(ctx); err != nil {
		return fmt.Errorf("root ListBuckets: %w", err)
	}
	// An unknown key is refused as unknown only once IAM has loaded.
	stranger, err := client("probe-"+randHex(4), randHex(16))
	if err != nil {
		return err
	}
	_, err = stranger.ListBuckets(ctx)
	if code := minio.ToErrorResponse(err).Code; code != "InvalidAccessKeyId" {
		return fmt.Errorf("IAM probe: %v", err)
	}
	return nil
}

// stop sends SIGTERM, waits, and kills after grace.
func (p *minioProc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return fmt.Errorf("testenv: minio had already exited on its own: %v", p.err)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	// A Freeze'd server would not see the TERM until continued.
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("testenv: minio did not stop within %v of SIGTERM and was killed", grace)
	}
}

// detach takes the running process (nil if none) out of m, so that
// exactly one caller stops it, and drops idle client connections to it.
func (m *MinIO) detach() *minioProc {
	m.mu.Lock()
	p := m.proc
	m.proc = nil
	m.mu.Unlock()
	m.closeIdle()
	return p
}

// Stop stops the server (SIGTERM, then wait for it to exit), keeping its
// data dir and port for Restart. Stopping a stopped server is a no-op.
// It also reports a server that had died on its own.
func (m *MinIO) Stop() error {
	p := m.detach()
	if p == nil {
		return nil
	}
	if err := p.stop(stopGrace); err != nil {
		return fmt.Errorf("%w; log:\n%s", err, tailFile(m.LogFile, 4000))
	}
	return nil
}

// Kill stops the server abruptly (SIGKILL, then waits): S3 dying mid-way
// rather than shutting down. Data written so far stays for Restart.
func (m *MinIO) Kill() error {
	p := m.detach()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// Freeze suspends the server (SIGSTOP): connections are accepted by the
// kernel but never answered, for client timeout tests. Thaw resumes it;
// Stop and Kill also work on a frozen server.
func (m *MinIO) Freeze() error {
	p, err := m.signal(syscall.SIGSTOP)
	if err != nil {
		return err
	}
	return waitStopped(p.cmd.Process.Pid, 5*time.Second)
}

// Thaw resumes a frozen server (SIGCONT).
func (m *MinIO) Thaw() error {
	_, err := m.signal(syscall.SIGCONT)
	return err
}

func (m *MinIO) signal(sig syscall.Signal) (*minioProc, error) {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return nil, errors.New("testenv: minio is not running")
	}
	return p, p.cmd.Process.Signal(sig)
}

// Restart stops the server if it is running and starts it again on the
// same port and data dir, waiting until it is ready: for "S3 went down and
// came back" tests. Buckets, users, policies and objects survive.
func (m *MinIO) Restart() error {
	if err := m.Stop(); err != nil {
		return err
	}
	return m.start()
}

// Running reports whether the server process is up (Stop not called since
// the last start and the process has not exited).
func (m *MinIO) Running() bool {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// MC runs mc against this server (alias MCAlias, root credentials) with a
// private MC_CONFIG_DIR and HOME, so ~/.mc is never touched. It returns the
// combined output and fails the test on error.
func (m *MinIO) MC(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := m.RunMC(args...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return out
}

// MCCommand is the mc command RunMC runs, with the MCAlias alias set, for
// callers that need the process itself (benchmarks read its rusage).
func (m *MinIO) MCCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, m.mcBin, args...)
	cmd.Env = append(withoutPrefix(os.Environ(), "MC_"),
		"MC_CONFIG_DIR="+m.mcConfigDir(),
		"HOME="+m.homeDir(),
		// An alias from the environment: no `mc alias set` state needed.
		"MC_HOST_"+MCAlias+"="+m.scheme()+"://"+m.RootUser+":"+m.RootPassword+"@"+m.Endpoint,
		"MC_NO_COLOR=1", "MC_QUIET=1", "MC_DISABLE_PAGER=1")
	cmd.SysProcAttr = childAttr(syscall.SIGKILL)
	return cmd
}

// RunMC is MC without a test: it returns the error (with mc's output).
func (m *MinIO) RunMC(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	out, err := m.MCCommand(ctx, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("mc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// Cache is a bucket set up like the seed guides' nix-cache bucket.
type Cache struct {
	Bucket string
	// AccessKey/SecretKey are the writer user's (the seeds' "nixbuilder").
	AccessKey, SecretKey string
	// HTTPURL is what Nix substitutes from: "http://127.0.0.1:PORT/BUCKET"
	// ("https://…" on a StartMinIOTLS server).
	HTTPURL string
	// S3URL is what `nixpushd push --to` takes:
	// "s3://BUCKET?endpoint=127.0.0.1:PORT&region=us-east-1&scheme=http"
	// (without scheme=http on a StartMinIOTLS server).
	S3URL    string
	Endpoint string // "127.0.0.1:PORT"
	Region   string // "us-east-1"
	Policy   string // name of the writer's policy
	MinIO    *MinIO
}

// NewCache creates a bucket exactly as the seed guides do, with mc: `mc mb`,
// `mc admin user add` (a writer with a random name and secret), `mc admin
// policy create` (policy.Writer, the writer's least privilege: notably no
// s3:DeleteObject, so a pusher that needs to delete fails our tests), `mc admin
// policy attach --user`, `mc anonymous set download`. Unlike the guides it
// does NOT write nix-cache-info: the pusher must. bucket "" picks a random
// name.
func (m *MinIO) NewCache(t testing.TB, bucket string) *Cache {
	t.Helper()
	if bucket == "" {
		bucket = "nix-cache-" + randHex(4)
	}
	c := &Cache{
		Bucket: bucket,
		// Short, like keys MinIO generates itself (at most 20 characters).
		AccessKey: "nixbuilder-" + randHex(4),
		SecretKey: randHex(16),
		HTTPURL:   m.URL + "/" + bucket,
		S3URL:     fmt.Sprintf("s3://%s?endpoint=%s&region=%s", bucket, m.Endpoint, Region),
		Endpoint:  m.Endpoint,
		Region:    Region,
		Policy:    bucket + "-write",
		MinIO:     m,
	}
	if m.CA == nil {
		c.S3URL += "&scheme=http"
	}
	policyFile := filepath.Join(t.TempDir(), "nix-cache-write.json")
	if err := os.WriteFile(policyFile, policy.Writer(bucket, c.AccessKey), 0o600); err != nil {
		t.Fatal(err)
	}
	target := MCAlias + "/" + bucket
	m.MC(t, "mb", target)
	m.MC(t, "admin", "user", "add", MCAlias, c.AccessKey, c.SecretKey)
	m.MC(t, "admin", "policy", "create", MCAlias, c.Policy, policyFile)
	m.MC(t, "admin", "policy", "attach", MCAlias, c.Policy, "--user", c.AccessKey)
	m.MC(t, "anonymous", "set", "download", target)
	return c
}

// client returns the (cached) minio-go client for a credential pair.
func (m *MinIO) client(accessKey, secretKey string) (*s3Client, error) {
	m.clientMu.Lock()
	defer m.clientMu.Unlock()
	key := accessKey + "\x00" + secretKey
	if c := m.clients[key]; c != nil {
		return c, nil
	}
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever HTTP_PROXY says
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		TLSClientConfig:     m.tlsConfig(),
	}
	c, err := minio.New(m.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(accessKey, secretKey, ""),
		Secure:    m.CA != nil,
		Region:    Region, // skips the GetBucketLocation round trip
		Transport: tr,
		// A local server either answers or is down on purpose; retrying
		// ten times with backoff would only slow "S3 is down" tests.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, err
	}
	if m.clients == nil {
		m.clients = map[string]*s3Client{}
	}
	m.clients[key] = &s3Client{c: c, tr: tr}
	return m.clients[key], nil
}

func (m *MinIO) closeIdle() {
	m.clientMu.Lock()
	defer m.clientMu.Unlock()
	for _, c := range m.clients {
		c.tr.CloseIdleConnections()
	}
}

// Client returns a minio-go client for the given credentials: path-style,
// region us-east-1, no retries. Its idle connections are closed at the
// test's cleanup (and on Stop).
func (m *MinIO) Client(t testing.TB, accessKey, secretKey string) *minio.Client {
	t.Helper()
	c, err := m.client(accessKey, secretKey)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(c.tr.CloseIdleConnections)
	return c.c
}

// RootClient is Client with the root credentials.
func (m *MinIO) RootClient(t testing.TB) *minio.Client {
	t.Helper()
	return m.Client(t, m.RootUser, m.RootPassword)
}

// opContext bounds one S3 call; it is not t.Context() so that the helpers
// also work from Cleanup functions, where that context is already done.
func opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// Objects lists every object key in the bucket with its size (root
// credentials).
func (m *MinIO) Objects(t testing.TB, bucket string) map[string]int64 {
	t.Helper()
	ctx, cancel := opContext()
	defer cancel()
	objs := map[string]int64{}
	for o := range m.RootClient(t).ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("testenv: listing %s: %v", bucket, o.Err)
		}
		objs[o.Key] = o.Size
	}
	return objs
}

// Get returns an object's content (root credentials); failing, including
// for a missing key, fails the test. Use Has to test for existence.
func (m *MinIO) Get(t testing.TB, bucket, key string) []byte {
	t.Helper()
	ctx, cancel := opContext()
	defer cancel()
	obj, err := m.RootClient(t).GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("testenv: get %s/%s: %v", bucket, key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("testenv: get %s/%s: %v", bucket, key, err)
	}
	return b
}

// Has reports whether the object exists (root credentials).
func (m *MinIO) Has(t testing.TB, bucket, key string) bool {
	t.Helper()
	ctx, cancel := opContext()
	defer cancel()
	_, err := m.RootClient(t).StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err == nil {
		return true
	}
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return false
	}
	t.Fatalf("testenv: stat %s/%s: %v", bucket, key, err)
	return false
}

// Client returns a minio-go client with the writer user's credentials.
func (c *Cache) Client(t testing.TB) *minio.Client {
	t.Helper()
	return c.MinIO.Client(t, c.AccessKey, c.SecretKey)
}

// Objects is MinIO.Objects for this cache's bucket.
func (c *Cache) Objects(t testing.TB) map[string]int64 {
	t.Helper()
	return c.MinIO.Objects(t, c.Bucket)
}

// Get is MinIO.Get for this cache's bucket.
func (c *Cache) Get(t testing.TB, key string) []byte {
	t.Helper()
	return c.MinIO.Get(t, c.Bucket, key)
}

// Has is MinIO.Has for this cache's bucket.
func (c *Cache) Has(t testing.TB, key string) bool {
	t.Helper()
	return c.MinIO.Has(t, c.Bucket, key)
}

// contentType follows the binary cache format reference.
func contentType(key string) string {
	switch {
	case key == "nix-cache-info":
		return "text/x-nix-cache-info"
	case strings.HasSuffix(key, ".narinfo"):
		return "text/x-nix-narinfo"
	case strings.HasPrefix(key, "nar/"):
		return "application/x-nix-nar"
	case strings.HasSuffix(key, ".ls"):
		return "application/json"
	default:
		return "application/octet-stream"
	}
}

// uploadRank orders an upload like a careful pusher: NARs, then other
// files, then narinfos, and nix-cache-info last.
func uploadRank(key string) int {
	switch {
	case strings.HasPrefix(key, "nar/"):
		return 0
	case key == "nix-cache-info":
		return 3
	case strings.HasSuffix(key, ".narinfo"):
		return 2
	default:
		return 1
	}
}

// UploadDir uploads every file under dir (e.g. made by `nix copy --to
// file://DIR`) into the bucket with the writer's credentials, keys being
// the slash-separated paths relative to dir. It returns the keys uploaded.
func (c *Cache) UploadDir(t testing.TB, dir string) []string {
	t.Helper()
	var keys []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err == nil {
			keys = append(keys, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatalf("testenv: walking %s: %v", dir, err)
	}
	sort.SliceStable(keys, func(i, j int) bool {
		if ri, rj := uploadRank(keys[i]), uploadRank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
	client := c.Client(t)
	for _, key := range keys {
		ctx, cancel := opContext()
		_, err := client.FPutObject(ctx, c.Bucket, key, filepath.Join(dir, filepath.FromSlash(key)),
			minio.PutObjectOptions{ContentType: contentType(key)})
		cancel()
		if err != nil {
			t.Fatalf("testenv: uploading %s: %v", key, err)
		}
	}
	return keys
}

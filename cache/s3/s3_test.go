package s3

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

func TestParseS3URL(t *testing.T) {
	good := []struct {
		in   string
		want Config
	}{
		{"s3://nix-cache", Config{Bucket: "nix-cache", Scheme: "https"}},
		{"s3://nix-cache?profile=nixbuilder&endpoint=s3.homelab.local", Config{Bucket: "nix-cache", Scheme: "https", Endpoint: "s3.homelab.local", Profile: "nixbuilder"}},
		{"s3://bkt?endpoint=127.0.0.1:9000&region=eu-west-1&scheme=http", Config{Bucket: "bkt", Scheme: "http", Endpoint: "127.0.0.1:9000", Region: "eu-west-1", SchemeGiven: true}},
		{"s3://bkt?endpoint=http://127.0.0.1:9000/", Config{Bucket: "bkt", Scheme: "http", Endpoint: "127.0.0.1:9000", SchemeGiven: true}},
		{"s3://bkt?scheme=https&endpoint=h:9", Config{Bucket: "bkt", Scheme: "https", Endpoint: "h:9", SchemeGiven: true}},
	}
	for _, tt := range good {
		got, err := ParseURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	bad := map[string]string{
		"s3://":                       "bucket",
		"s3://bkt/prefix":             "no path",
		"s3://bkt?scheme=ftp":         "scheme",
		"s3://bkt?compression=xz":     "--compression",
		"s3://bkt?secret-key=/k":      "--secret-key-file",
		"s3://bkt?endpoint=ftp://h":   "endpoint scheme",
		"s3://bkt?bogus=1":            "unknown parameter",
		"s3://bkt?endpoint=host/path": "HOST:PORT",
		"http://b":                    "s3://",
		"s3://b":                      "bucket",
		"s3://Bad_Bucket":             "bucket",
	}
	for in, want := range bad {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) = %v, want error containing %q", in, err, want)
		}
	}
}

func TestPartSize(t *testing.T) {
	for _, size := range []int64{0, 1, 16 << 20, 1 << 30, 5 << 30, 6 << 30, 100 << 30, 4 << 40} {
		ps := int64(PartSize(size, defaultMinPart))
		if ps < 16<<20 || ps%(1<<20) != 0 {
			t.Errorf("PartSize(%d) = %d: below 16 MiB or not whole MiB", size, ps)
		}
		if parts := (size + ps - 1) / ps; parts > 10000 {
			t.Errorf("PartSize(%d) = %d gives %d parts, over S3's 10,000", size, ps, parts)
		}
	}
}

// The credential chain: --credentials-file, then the profile or the
// environment (in the order Nix's SDK uses), then an instance role; each
// result names where it came from.
func TestResolveCredentials(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/credentials"
	if err := os.WriteFile(file, []byte("[default]\naws_access_key_id=defaultuser\naws_secret_access_key=defaultsecret\n\n"+
		"[nixbuilder]\naws_access_key_id=fileuser\naws_secret_access_key=filesecret\n\n"+
		"[half]\naws_access_key_id=halfuser\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	imds := fakeIMDS(t, "roleuser", time.Now().Add(time.Hour))
	credsFile := map[string]string{"AWS_ACCESS_KEY_ID": "credfileuser", "AWS_SECRET_ACCESS_KEY": "credfilesecret"}
	for _, tc := range []struct {
		name       string
		env        map[string]string // process environment
		profile    string
		opts       Options
		wantKey    string
		wantSource string
	}{
		{"credentials file first", map[string]string{"AWS_ACCESS_KEY_ID": "envuser", "AWS_SECRET_ACCESS_KEY": "envsecret"}, "nixbuilder",
			Options{Env: credsFile, EnvFile: "/run/credentials/nixpushd.service/s3"}, "credfileuser", "--credentials-file /run/credentials/nixpushd.service/s3"},
		{"profile before environment", map[string]string{"AWS_ACCESS_KEY_ID": "envuser", "AWS_SECRET_ACCESS_KEY": "envsecret"}, "nixbuilder",
			Options{}, "fileuser", file + " [nixbuilder]"},
		{"environment before default profile", map[string]string{"AWS_ACCESS_KEY_ID": "envuser", "AWS_SECRET_ACCESS_KEY": "envsecret"}, "",
			Options{}, "envuser", "environment (AWS_ACCESS_KEY_ID)"},
		{"default profile", nil, "", Options{}, "defaultuser", file + " [default]"},
		{"AWS_PROFILE", map[string]string{"AWS_PROFILE": "nixbuilder"}, "", Options{}, "fileuser", file + " [nixbuilder]"},
		{"AWS_PROFILE from the credentials file", nil, "", Options{Env: map[string]string{"AWS_PROFILE": "nixbuilder"}}, "fileuser", file + " [nixbuilder]"},
		{"instance role last", map[string]string{"AWS_SHARED_CREDENTIALS_FILE": dir + "/none"}, "", Options{}, "roleuser", "instance role (IMDS)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearAWSEnv(t)
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
			setIMDS(t, imds.URL, time.Second)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, src, err := resolveCredentials(t.Context(), tc.profile, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.GetWithContext(nil)
			if err != nil || v.AccessKeyID != tc.wantKey {
				t.Errorf("key %q, %v; want %q", v.AccessKeyID, err, tc.wantKey)
			}
			if src != tc.wantSource {
				t.Errorf("source %q, want %q", src, tc.wantSource)
			}
		})
	}

	for _, tc := range []struct {
		name    string
		profile string
		opts    Options
		want    []string
	}{
		{"missing profile", "missing", Options{}, []string{"no S3 credentials", "[missing]", file}},
		{"half a profile", "half", Options{}, []string{"no S3 credentials", "[half]"}},
		{"nothing anywhere", "", Options{Env: map[string]string{}}, []string{"no S3 credentials", "AWS_ACCESS_KEY_ID", "--credentials-file", "instance role"}},
		{"half a credentials file", "", Options{Env: map[string]string{"AWS_ACCESS_KEY_ID": "x"}, EnvFile: "/etc/s3.env"}, []string{"--credentials-file /etc/s3.env", "AWS_SECRET_ACCESS_KEY", "set both"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearAWSEnv(t)
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
			t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			if tc.profile == "" && len(tc.opts.Env) == 0 {
				t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/none")
			}
			_, _, err := resolveCredentials(t.Context(), tc.profile, tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "filesecret") || strings.Contains(err.Error(), "defaultsecret") || strings.Contains(err.Error(), "halfuser") {
				t.Errorf("error leaks a credential: %v", err)
			}
		})
	}
}

// Role credentials renew: once the session expires, the next request
// fetches new ones from the metadata service.
func TestRoleCredentialsRefresh(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	// Already expired: every Get must ask again.
	imds := fakeIMDS(t, "session", time.Now().Add(-time.Minute))
	setIMDS(t, imds.URL, time.Second)
	c, src, err := resolveCredentials(t.Context(), "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if src != "instance role (IMDS)" {
		t.Errorf("source %q", src)
	}
	first, _ := c.GetWithContext(nil)
	if n := imds.fetches.Load(); n != 1 {
		t.Errorf("%d credential fetches after the probe and first use, want 1 (the probe's answer reused)", n)
	}
	second, err := c.GetWithContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.SessionToken == second.SessionToken || imds.fetches.Load() != 2 {
		t.Errorf("expired session not renewed: %q then %q, %d fetches", first.SessionToken, second.SessionToken, imds.fetches.Load())
	}

	// A session valid for an hour is reused.
	imds2 := fakeIMDS(t, "long", time.Now().Add(time.Hour))
	setIMDS(t, imds2.URL, time.Second)
	c, _, err = resolveCredentials(t.Context(), "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.GetWithContext(nil)
	b, _ := c.GetWithContext(nil)
	if a.SessionToken != b.SessionToken || imds2.fetches.Load() != 1 {
		t.Errorf("a valid session was fetched again: %q, %q, %d fetches", a.SessionToken, b.SessionToken, imds2.fetches.Load())
	}
}

// A metadata address that swallows requests (off EC2, 169.254.169.254
// often does) gives "no S3 credentials" after the short probe, not a hang.
func TestRoleProbeBounded(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	done := make(chan struct{})
	go func() { // accept and never answer
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	defer func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	}()
	setIMDS(t, "http://"+l.Addr().String(), 100*time.Millisecond)
	_, _, err = resolveCredentials(t.Context(), "", Options{})
	if err == nil || !strings.Contains(err.Error(), "no S3 credentials") {
		t.Errorf("got %v, want no S3 credentials", err)
	}
	// Disabled: not even asked.
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	imds := fakeIMDS(t, "roleuser", time.Now().Add(time.Hour))
	setIMDS(t, imds.URL, time.Second)
	if _, _, err := resolveCredentials(t.Context(), "", Options{}); err == nil || imds.fetches.Load()+imds.requests.Load() != 0 {
		t.Errorf("AWS_EC2_METADATA_DISABLED=true: %v, %d requests", err, imds.requests.Load())
	}
}

// clearAWSEnv empties every variable the chain reads, for this test.
func clearAWSEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_EC2_METADATA_DISABLED", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_ROLE_ARN"} {
		t.Setenv(k, "")
	}
}

func setIMDS(t *testing.T, url string, probe time.Duration) {
	t.Helper()
	oldE, oldP := imdsEndpoint, imdsProbeTimeout
	imdsEndpoint, imdsProbeTimeout = url, probe
	t.Cleanup(func() { imdsEndpoint, imdsProbeTimeout = oldE, oldP })
}

type imdsServer struct {
	*httptest.Server
	requests, fetches atomic.Int32
}

// fakeIMDS answers like EC2's instance metadata service (IMDSv2) for a
// role "nixbuilder": each credential fetch gets a new session token.
func fakeIMDS(t *testing.T, key string, expires time.Time) *imdsServer {
	t.Helper()
	s := &imdsServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		const base = "/latest/meta-data/iam/security-credentials/"
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			fmt.Fprint(w, "imds-token")
		case r.Header.Get("X-aws-ec2-metadata-token") != "imds-token":
			http.Error(w, "no token", http.StatusUnauthorized)
		case r.URL.Path == base:
			fmt.Fprintln(w, "nixbuilder")
		case r.URL.Path == base+"nixbuilder":
			n := s.fetches.Add(1)
			json.NewEncoder(w).Encode(map[string]any{
				"Code": "Success", "AccessKeyId": key, "SecretAccessKey": "rolesecret",
				"Token": fmt.Sprintf("session-%d", n), "Expiration": expires.UTC().Format(time.RFC3339),
			})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func FuzzParseS3URL(f *testing.F) {
	f.Add("s3://nix-cache?endpoint=127.0.0.1:9000&region=us-east-1&scheme=http&profile=p")
	f.Add("s3://b")
	f.Add("s3://bucket?endpoint=http://h:1/")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := ParseURL(s)
		if err != nil {
			return
		}
		// Whatever parses renders to a URL that parses to the same config.
		again, err := ParseURL(cfg.String())
		if err != nil || again != cfg {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, cfg, cfg.String(), again, err)
		}
	})
}

// A small object over plain http goes as one unsigned body with a
// Content-MD5, not minio-go's chunk-signed stream: that framing cost
// more CPU than the rest of a tiny NAR's request.
func TestSmallPutUnsignedWithMD5(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "writer-secret")
	type seen struct {
		sha, md5, enc string
		body          []byte
	}
	var mu sync.Mutex
	var puts []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			puts = append(puts, seen{r.Header.Get("X-Amz-Content-Sha256"), r.Header.Get("Content-Md5"), r.Header.Get("Content-Encoding"), b})
			mu.Unlock()
			w.Header().Set("ETag", `"e"`)
		}
	}))
	defer srv.Close()
	s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: "http", Region: "us-east-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("StorePath: /nix/store/x\n")
	if err := s.Put(t.Context(), "x.narinfo", bytes.NewReader(body), int64(len(body)), cache.TypeNarInfo); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(body)
	mu.Lock()
	defer mu.Unlock()
	if len(puts) != 1 {
		t.Fatalf("%d PUTs, want 1", len(puts))
	}
	p := puts[0]
	if p.sha != "UNSIGNED-PAYLOAD" || p.md5 != base64.StdEncoding.EncodeToString(sum[:]) || !bytes.Equal(p.body, body) || strings.Contains(p.enc, "aws-chunked") {
		t.Errorf("PUT sent X-Amz-Content-Sha256 %q, Content-MD5 %q, Content-Encoding %q, body %q; want UNSIGNED-PAYLOAD, the body's MD5, the plain body", p.sha, p.md5, p.enc, p.body)
	}
}

// Bursts of --io-jobs requests reuse the connections of the last burst
// instead of dialling again (minio-go's transport kept only 16 idle).
func TestBurstsReuseConnections(t *testing.T) {
	clearAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "writer")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "writer-secret")
	var conns atomic.Int64
	var mu sync.Mutex
	release := make(chan struct{})
	inFlight := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hold each burst until all of it has arrived, so that it
		// really needs pusherIOJobs connections at once.
		mu.Lock()
		ch := release
		if inFlight++; inFlight == pusherIOJobs {
			close(ch)
		}
		mu.Unlock()
		<-ch
		w.WriteHeader(http.StatusNotFound) // a HEAD's "no such key"
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s, err := New(t.Context(), Config{Bucket: "nix-cache", Endpoint: srv.Listener.Addr().String(), Scheme: "http", Region: "us-east-1"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for burst := range 3 {
		mu.Lock()
		release, inFlight = make(chan struct{}), 0
		mu.Unlock()
		var wg sync.WaitGroup
		for i := range pusherIOJobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Exists(t.Context(), fmt.Sprintf("%d-%d.narinfo", burst, i)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if n := conns.Load(); n > pusherIOJobs+2 {
		t.Errorf("3 bursts of %d requests opened %d connections, want about %d (reused)", pusherIOJobs, n, pusherIOJobs)
	}
}

// pusherIOJobs is the pusher's requests in flight (upload.DefaultIOJobs):
// a burst this wide must reuse its connections.
const pusherIOJobs = 32

// With Anonymous (read-only commands), no credentials anywhere means
// unsigned requests, not an error; credentials found still win, and a
// named profile or credentials file that is missing still fails.
func TestResolveCredentialsAnonymous(t *testing.T) {
	dir := t.TempDir()
	clearAWSEnv(t)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	c, src, err := resolveCredentials(t.Context(), "", Options{Anonymous: true})
	if err != nil || src != SourceAnonymous {
		t.Fatalf("anonymous: %q %v", src, err)
	}
	if v, err := c.GetWithContext(nil); err != nil || v.AccessKeyID != "" || !v.SignerType.IsAnonymous() {
		t.Errorf("anonymous credentials: %+v %v", v, err)
	}
	if _, _, err := resolveCredentials(t.Context(), "missing", Options{Anonymous: true}); err == nil {
		t.Error("a named profile that is missing went anonymous")
	}
	if _, _, err := resolveCredentials(t.Context(), "", Options{Anonymous: true, Env: map[string]string{}}); err == nil {
		t.Error("a credentials file without keys went anonymous")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "envuser")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	if _, src, err := resolveCredentials(t.Context(), "", Options{Anonymous: true}); err != nil || src == SourceAnonymous {
		t.Errorf("credentials in the environment: %q %v", src, err)
	}
}

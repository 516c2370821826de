package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request kinds a Proxy counts (keys of Counts, next to the methods
// "GET", "HEAD", "PUT", "POST", "DELETE" and KindTotal). Path-style S3
// only: /BUCKET is the bucket, /BUCKET/KEY an object.
const (
	KindHeadObject        = "head-object"        // HEAD /BUCKET/KEY (existence checks)
	KindGetObject         = "get-object"         // GET /BUCKET/KEY
	KindPutObject         = "put-object"         // PUT /BUCKET/KEY, whole object
	KindPutPart           = "put-part"           // PUT /BUCKET/KEY?partNumber=…&uploadId=…
	KindMultipartInit     = "multipart-init"     // POST /BUCKET/KEY?uploads
	KindMultipartComplete = "multipart-complete" // POST /BUCKET/KEY?uploadId=…
	KindMultipartAbort    = "multipart-abort"    // DELETE /BUCKET/KEY?uploadId=…
	KindList              = "list"               // GET /BUCKET with list-type, prefix, … or no query
	KindDeleteObject      = "delete-object"      // DELETE /BUCKET/KEY
	KindMultiDelete       = "multi-delete"       // POST /BUCKET?delete
	KindOther             = "other"              // anything else (bucket location, ListBuckets, …)
	KindTotal             = "total"
	// KindInjected counts the requests FailNext made fail.
	KindInjected = "injected"
)

// Proxy is an HTTP reverse proxy in front of an S3 server (MinIO) that
// counts the requests going through it by method and by kind, and can make
// the next requests of a kind fail. Requests pass through untouched —
// Host header included, since S3 V4 signatures cover it — so clients
// point at Endpoint exactly as they would at the server.
type Proxy struct {
	target string
	srv    *httptest.Server
	tr     *http.Transport

	mu     sync.Mutex
	counts map[string]int64
	faults map[string][]fault
}

type fault struct {
	n      int
	status int
}

// StartProxy starts a proxy on 127.0.0.1:<random port> in front of target
// ("127.0.0.1:PORT", e.g. MinIO.Endpoint). It is closed at the test's
// cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{
		target: target,
		counts: map[string]int64{},
		faults: map[string][]fault{},
		tr: &http.Transport{
			Proxy:               nil, // loopback only, whatever HTTP_PROXY says
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
			// Pass bodies through as the server sent them.
			DisableCompression: true,
		},
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = target
			// The client signed the Host it sent: keep it.
			r.Out.Host = r.In.Host
		},
		Transport: p.tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "testenv proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := Classify(r.Method, r.URL)
		_, key := splitS3Path(r.URL.Path)
		sw := &statusWriter{ResponseWriter: w, p: p}
		if r.ContentLength > 0 {
			p.addBytes(kind, r.ContentLength)
		}
		if status, fail := p.record(r.Method, kind, KeyClass(key)); fail {
			p.inject(sw, r, kind, status)
			return
		}
		rp.ServeHTTP(sw, r)
	}))
	t.Cleanup(func() {
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// Endpoint is "127.0.0.1:PORT", for an s3:// URL's endpoint= or minio.New.
func (p *Proxy) Endpoint() string { return p.srv.Listener.Addr().String() }

// URL is "http://127.0.0.1:PORT".
func (p *Proxy) URL() string { return p.srv.URL }

// Target is the server the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Counts returns a copy of the counters: per method ("HEAD", "PUT", …),
// per kind (Kind* constants), per kind and class of key ("head-object:nar",
// see KeyClass), per response status ("status:404"), KindTotal, and
// KindInjected.
func (p *Proxy) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Reset zeroes the counters and drops pending faults.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.counts)
	clear(p.faults)
}

// FailNext makes the next n requests of kind (a Kind* constant, or a
// method such as "PUT") fail with status, after the request body has been
// read in full (as a server failing late would), with an S3 XML error.
// Calls add up: FailNext(k, 2, 500) then FailNext(k, 1, 503) fails two
// with 500, then one with 503.
func (p *Proxy) FailNext(kind string, n int, status int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[kind] = append(p.faults[kind], fault{n: n, status: status})
}

// BytesIn is the counter key of request body bytes received, in total;
// "bytes-in:KIND" counts them per kind.
const BytesIn = "bytes-in"

func (p *Proxy) addBytes(kind string, n int64) {
	p.mu.Lock()
	p.counts[BytesIn] += n
	p.counts[BytesIn+":"+kind] += n
	p.mu.Unlock()
}

func (p *Proxy) count(key string) {
	p.mu.Lock()
	p.counts[key]++
	p.mu.Unlock()
}

// record counts one request and says whether it must fail.
func (p *Proxy) record(method, kind, class string) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[method]++
	p.counts[kind]++
	if class != "" {
		p.counts[kind+":"+class]++
	}
	p.counts[KindTotal]++
	for _, key := range []string{kind, method} {
		q := p.faults[key]
		if len(q) == 0 {
			continue
		}
		status := q[0].status
		if q[0].n--; q[0].n == 0 {
			q = q[1:]
		}
		if len(q) == 0 {
			delete(p.faults, key)
		} else {
			p.faults[key] = q
		}
		p.counts[KindInjected]++
		return status, true
	}
	return 0, false
}

// s3Codes are the error codes S3 gives with these statuses; clients decide
// on retries by status and code.
var s3Codes = map[int]string{
	http.StatusBadRequest:          "BadRequest",
	http.StatusForbidden:           "AccessDenied",
	http.StatusNotFound:            "NoSuchKey",
	http.StatusInternalServerError: "InternalError",
	http.StatusBadGateway:          "BadGateway",
	http.StatusServiceUnavailable:  "SlowDown",
}

func (p *Proxy) inject(w http.ResponseWriter, r *http.Request, kind string, status int) {
	// Read the whole body first: the client has sent it all when it sees
	// the error, as with a server that fails while storing.
	_, _ = io.Copy(io.Discard, r.Body)
	r.Body.Close()
	code := s3Codes[status]
	if code == "" {
		code = strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("X-Testenv-Injected", kind)
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	bucket, key := splitS3Path(r.URL.Path)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>injected by the testenv proxy (%s)</Message><BucketName>%s</BucketName><Key>%s</Key><Resource>%s</Resource><RequestId>testenv-proxy</RequestId></Error>`,
		code, kind, xmlEscape(bucket), xmlEscape(key), xmlEscape(r.URL.Path))
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

// statusWriter counts the status sent, before the client can see it.
type statusWriter struct {
	http.ResponseWriter
	p    *Proxy
	sent bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.sent && code >= 200 {
		s.sent = true
		s.p.count("status:" + strconv.Itoa(code))
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.sent {
		s.WriteHeader(http.StatusOK)
		return s.ResponseWriter.Write(b)
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// KeyClass sorts an object key of a binary cache: "narinfo", "nar",
// "cache-info", "lock", "pin", "ls" or "other"; "" for no key (bucket).
func KeyClass(key string) string {
	switch {
	case key == "":
		return ""
	case key == "nix-cache-info":
		return "cache-info"
	case strings.HasSuffix(key, ".narinfo"):
		return "narinfo"
	case strings.HasPrefix(key, "nar/"):
		return "nar"
	case strings.HasPrefix(key, "locks/"):
		return "lock"
	case strings.HasPrefix(key, "pins/"):
		return "pin"
	case strings.HasSuffix(key, ".ls"):
		return "ls"
	}
	return "other"
}

// splitS3Path splits a path-style request path into bucket and key.
func splitS3Path(path string) (bucket, key string) {
	path = strings.TrimPrefix(path, "/")
	bucket, key, _ = strings.Cut(path, "/")
	return bucket, key
}

// Classify gives a path-style S3 request's kind (a Kind* constant).
func Classify(method string, u *url.URL) string {
	bucket, key := splitS3Path(u.Path)
	q := u.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	if bucket == "" {
		return KindOther // ListBuckets, health checks
	}
	if key == "" { // the bucket itself
		switch method {
		case http.MethodGet:
			if len(q) == 0 || has("list-type") || has("prefix") || has("delimiter") || has("marker") ||
				has("continuation-token") || has("start-after") || has("max-keys") {
				return KindList
			}
		case http.MethodPost:
			if has("delete") {
				return KindMultiDelete
			}
		}
		return KindOther
	}
	switch method {
	case http.MethodHead:
		return KindHeadObject
	case http.MethodGet:
		if has("uploadId") || has("tagging") || has("acl") || has("retention") || has("legal-hold") || has("attributes") {
			return KindOther
		}
		return KindGetObject
	case http.MethodPut:
		switch {
		case has("partNumber") && has("uploadId"):
			return KindPutPart
		case has("tagging") || has("acl") || has("retention") || has("legal-hold"):
			return KindOther
		}
		return KindPutObject
	case http.MethodPost:
		switch {
		case has("uploads"):
			return KindMultipartInit
		case has("uploadId"):
			return KindMultipartComplete
		}
	case http.MethodDelete:
		if has("uploadId") {
			return KindMultipartAbort
		}
		return KindDeleteObject
	}
	return KindOther
}

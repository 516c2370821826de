package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// Cache is a read-only binary cache at an http:// or https:// URL.
type Cache struct {
	base   *url.URL // ends in "/"
	client *http.Client
}

var (
	_ cache.Target  = (*Cache)(nil)
	_ cache.Opener  = (*Cache)(nil)
	_ cache.Deleter = (*Cache)(nil)
)

// ErrReadOnly is returned (wrapped, permanent) by Put and Delete.
var ErrReadOnly = errors.New("read-only: an http(s):// cache is read as Nix clients read it; write through its s3:// or file:// URL")

// New returns the cache at rawURL; client nil means one with
// http.DefaultTransport (proxy variables honoured) and a 30 s header
// timeout.
func New(rawURL string, client *http.Client) (*Cache, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cache URL %q: want http://HOST/PATH or https://HOST/PATH", rawURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("cache URL %q: an http(s) cache URL takes no query or fragment", rawURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 30 * time.Second
		client = &http.Client{Transport: t}
	}
	return &Cache{base: u, client: client}, nil
}

func (c *Cache) String() string { return strings.TrimSuffix(c.base.Redacted(), "/") }

func (c *Cache) url(key string) string {
	return c.base.String() + (&url.URL{Path: key}).EscapedPath()
}

// do sends method for key and classifies the answer: a 404 (or 410) is
// cache.ErrNotFound; 401/403 are configuration errors; other 4xx are
// permanent; 5xx and network errors are transient.
func (c *Cache) do(ctx context.Context, method, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(key), nil)
	if err != nil {
		return nil, &cache.PermanentError{Err: err}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s %s: %w", method, c.url(key), err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return resp, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w", method, c.url(key), cache.ErrNotFound)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	err = fmt.Errorf("%s %s: %s", method, c.url(key), resp.Status)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, &cache.PermanentError{Err: fmt.Errorf("%w (the server refuses to serve it: a cache Nix clients can use answers GET without credentials)", err), Config: true}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, err
	default:
		return nil, &cache.PermanentError{Err: err}
	}
}

// Exists asks with HEAD, as Nix does for a narinfo.
func (c *Cache) Exists(ctx context.Context, key string) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, key)
	if errors.Is(err, cache.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// maxSmall bounds Get: narinfos and nix-cache-info are small.
const maxSmall = 16 << 20

func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, key)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSmall+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", c.url(key), err)
	}
	if len(b) > maxSmall {
		return nil, &cache.PermanentError{Err: fmt.Errorf("GET %s: more than %d bytes", c.url(key), maxSmall)}
	}
	return b, nil
}

func (c *Cache) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, key)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (c *Cache) Put(context.Context, string, io.Reader, int64, string) error {
	return &cache.PermanentError{Err: fmt.Errorf("%s: %w", c, ErrReadOnly), Config: true}
}

func (c *Cache) Delete(context.Context, []string) error {
	return &cache.PermanentError{Err: fmt.Errorf("%s: %w", c, ErrReadOnly), Config: true}
}

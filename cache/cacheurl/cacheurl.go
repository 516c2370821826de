package cacheurl

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	cachehttp "github.com/nixpushd/nixpushd/cache/http"
	"github.com/nixpushd/nixpushd/cache/s3"
)

// Options say how to reach an s3:// cache, beyond its URL; a file://
// cache needs none.
type Options = s3.Options

// Open returns the target for a cache URL: s3://BUCKET?…, file:///DIR,
// or http(s)://HOST/PATH, which can only be read.
func Open(ctx context.Context, rawURL string, opts Options) (cache.Target, error) {
	switch {
	case strings.HasPrefix(rawURL, "s3://"):
		cfg, err := s3.ParseURL(rawURL)
		if err != nil {
			return nil, err
		}
		b, err := s3.New(ctx, cfg, opts)
		if err != nil {
			return nil, err
		}
		return b, nil
	case strings.HasPrefix(rawURL, "file://"):
		d, err := file.New(strings.TrimPrefix(rawURL, "file://"))
		if err != nil {
			return nil, err
		}
		return d, nil
	case strings.HasPrefix(rawURL, "http://") || strings.HasPrefix(rawURL, "https://"):
		transport, err := s3.HTTPTransport(opts.CAFile)
		if err != nil {
			return nil, err
		}
		return cachehttp.New(rawURL, &http.Client{Transport: transport})
	default:
		return nil, fmt.Errorf("cache URL %q: use s3://BUCKET?endpoint=HOST:PORT, file:///DIR, or (read-only) http(s)://HOST/PATH", rawURL)
	}
}

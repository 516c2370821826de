package cacheurl

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/cache/s3"
)

// Options say how to reach an s3:// cache, beyond its URL; a file://
// cache needs none.
type Options = s3.Options

// Open returns the target for a cache URL: s3://BUCKET?… or file:///DIR.
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
	default:
		return nil, fmt.Errorf("cache URL %q: use s3://BUCKET?endpoint=HOST:PORT or file:///DIR", rawURL)
	}
}

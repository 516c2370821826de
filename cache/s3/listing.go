package s3

// The XML of a ListObjectsV2 page, scanned for the four fields nixpushd
// uses rather than decoded.

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/cache"
)

// scanListPage calls fn for each <Contents> of a ListObjectsV2 result
// and returns the continuation token ("" on the last page).
func scanListPage(body []byte, fn func(cache.ObjectInfo) error) (string, error) {
	if !bytes.Contains(body, []byte("<ListBucketResult")) {
		return "", fmt.Errorf("listing: the server's answer is not a ListBucketResult: %.100q", body)
	}
	urlEncoded := string(xmlField(body, "EncodingType")) == "url"
	rest := body
	for {
		i := bytes.Index(rest, []byte("<Contents>"))
		if i < 0 {
			break
		}
		rest = rest[i+len("<Contents>"):]
		j := bytes.Index(rest, []byte("</Contents>"))
		if j < 0 {
			return "", errors.New("listing: unterminated <Contents>")
		}
		c := rest[:j]
		rest = rest[j:]
		key, err := xmlText(xmlField(c, "Key"), urlEncoded)
		if err != nil {
			return "", fmt.Errorf("listing: key %q: %w", xmlField(c, "Key"), err)
		}
		if key == "" || strings.HasSuffix(key, "/") {
			continue // a "directory" marker
		}
		o := cache.ObjectInfo{Key: key}
		if v := xmlField(c, "Size"); len(v) > 0 {
			if o.Size, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				return "", fmt.Errorf("listing: %s: size %q", key, v)
			}
		}
		if v := xmlField(c, "LastModified"); len(v) > 0 {
			if o.LastModified, err = time.Parse(time.RFC3339Nano, string(v)); err != nil {
				return "", fmt.Errorf("listing: %s: time %q", key, v)
			}
		}
		if v := xmlField(c, "ETag"); len(v) > 0 {
			tag, _ := xmlText(v, false)
			o.ETag = strings.Trim(tag, `"`)
		}
		if err := fn(o); err != nil {
			return "", err
		}
	}
	if string(xmlField(body, "IsTruncated")) != "true" {
		return "", nil
	}
	next, _ := xmlText(xmlField(body, "NextContinuationToken"), false)
	if next == "" {
		return "", errors.New("listing: truncated without a NextContinuationToken")
	}
	return next, nil
}

// xmlField returns the raw text of the first <name> element in b.
func xmlField(b []byte, name string) []byte {
	open := "<" + name + ">"
	i := bytes.Index(b, []byte(open))
	if i < 0 {
		return nil
	}
	v := b[i+len(open):]
	j := bytes.Index(v, []byte("</"+name+">"))
	if j < 0 {
		return nil
	}
	return v[:j]
}

// xmlText unescapes an element's text, then the URL encoding S3 applies
// to keys when asked for encoding-type=url.
func xmlText(raw []byte, urlEncoded bool) (string, error) {
	s := string(raw)
	if strings.IndexByte(s, '&') >= 0 {
		s = html.UnescapeString(s)
	}
	if urlEncoded {
		return url.QueryUnescape(s)
	}
	return s, nil
}

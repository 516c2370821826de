// Package cacheurl opens the cache a URL names: s3://BUCKET?… through
// package s3, file:///DIR through package file, http(s)://HOST/PATH
// (read-only) through package http. It is the one place that knows which
// URL schemes exist.
//
// It knows URL schemes and nothing of what the backends do.
package cacheurl

// Package s3 is the s3:// cache backend: a binary cache in an S3 bucket
// (AWS, MinIO, Ceph, Garage…), addressed the way Nix's own
// `s3://BUCKET?endpoint=…&region=…&scheme=…&profile=…` URLs do.
//
// It owns everything S3: the URL (config.go), where credentials come from
// (credentials.go), TLS and the hints for connection mistakes (tls.go),
// the hints for S3's error answers (errors.go), and the requests. The
// per-path requests (small PUTs, HEADs, GETs, listing pages) go out as
// requests of our own (direct.go, signed by sign.go, listings scanned by
// listing.go); everything else, and any request the server will not take
// our way, goes through minio-go (s3.go).
//
// It knows nothing of Nix: keys and bodies are opaque.
package s3

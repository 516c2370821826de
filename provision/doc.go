// Package provision sets up a Nix binary cache on S3 from nothing, as the
// seed guides do by hand: the bucket, nix-cache-info, anonymous download,
// the least-privilege writer user and its policy (on MinIO), the signing
// key (recorded in the cache through cachekeys, which refuses another key
// under a recorded name) and the writer's credentials file. Every step first looks at what is
// there, so running it again changes nothing.
//
// It talks to S3 and the MinIO admin API; it knows nothing of pushing or
// of what the cache holds beyond nix-cache-info and the key records.
package provision

// Package http is a read-only binary cache reached over plain HTTP(S),
// read exactly as Nix clients read one (a reverse proxy, a CDN, a public
// bucket's website endpoint): GET nix-cache-info, narinfos and NARs,
// HEAD for existence. It cannot list, and Put and Delete fail with a
// permanent "read-only" error; verify walks closures through it.
package http

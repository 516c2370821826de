// Package nar implements the Nix binary cache formats nixpushd produces:
// NAR serialization, nix-base32, hashes, store paths, narinfo files,
// fingerprints and ed25519 signatures. It knows nothing of S3 or networks.
package nar

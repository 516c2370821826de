// Package cachekeys records which signing keys a binary cache is signed
// with: for each key name, the public key, one object per name under
// Prefix ("nixpushd/keys/NAME" holding "NAME:BASE64\n", which Nix never
// reads). Nix keeps one trusted key per name, so two machines signing one
// cache with different keys of the same name break clients in an order-
// dependent way; Record refuses that before the first signature.
//
// It knows key names and public keys, and reaches the cache only through
// cache.Target (listing through cache.Lister); it knows nothing of S3.
package cachekeys

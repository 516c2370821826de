// Command nixpushd keeps a Nix binary cache on S3 (or a file:// directory)
// filled with what this machine builds.
package main

// Package policy holds the IAM policy documents a Nix cache on S3 uses:
// the least-privilege writer's, anonymous download, and a comparison that
// sees through how servers respell them. It depends on nothing else in
// nixpushd, so that the test environment builds its MinIO users from the
// same documents init applies.
package policy

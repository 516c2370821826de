// Command nixpushd keeps a Nix binary cache on S3 (or a file:// directory)
// filled with what this machine builds.
//
// It is thin: flags, subcommands and their output. The work is the
// library packages'; this is the only package that reads the environment
// (knobs.go) or calls os.Exit (main.go).
package main

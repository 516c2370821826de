package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
)

const usage = `usage: nixpushd COMMAND [flags]

commands:
  init           create the bucket, writer user, signing key and nix-cache-info
  push PATH...   upload store paths and their closures to a binary cache
  daemon         run the service: watch the store, take hook notifications, upload
  hook           Nix's post-build-hook (also installed as nixpushd-hook)
  install-hook   set post-build-hook = nixpushd-hook in /etc/nix/nix.conf
  status         show the daemon's queue
  gc             delete what no root needs, never breaking a closure
  verify         check the cache as clients rely on it (--repair fixes it)
  pin            add, list or remove named roots that gc keeps
  version        print the version

Run 'nixpushd COMMAND -h' for the flags of a command.
`

// run dispatches on the subcommand (or on argv[0], for the hook alias).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	var h helpShown
	if errors.As(err, &h) {
		fmt.Fprint(stdout, h.text)
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Nix's post-build-hook is a bare program path: the alias needs no
	// arguments.
	if len(args) > 0 && filepath.Base(args[0]) == "nixpushd-hook" {
		return runHook(ctx, args[1:], stdout, stderr)
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError{}
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "init":
		return runInit(ctx, rest, stdout, stderr)
	case "push":
		return runPush(ctx, rest, stdout, stderr)
	case "daemon":
		return runDaemon(ctx, rest, stdout, stderr)
	case "hook":
		return runHook(ctx, rest, stdout, stderr)
	case "install-hook":
		return runInstallHook(ctx, args[0], rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "gc":
		return runGC(ctx, rest, stdout, stderr)
	case "verify":
		return runVerify(ctx, rest, stdout, stderr)
	case "pin":
		return runPin(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "nixpushd", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

const usage = `usage: nixpushd COMMAND [flags]

commands:
  init           create the bucket, writer user, signing key and nix-cache-info
  push PATH...   upload store paths and their closures to a binary cache
  daemon         run the service: watch the store, take hook notifications, upload
  hook           Nix's post-build-hook (also installed as nixpushd-hook)
  status         show the daemon's queue
  gc             delete what no root needs, never breaking a closure
  verify         check the cache as clients rely on it (--repair fixes it)
  pin            add, list or remove named roots that gc keeps
  version        print the version

Run 'nixpushd COMMAND -h' for the flags of a command.
`

var version = "dev"

// run dispatches on the subcommand (or on argv[0], for the hook alias).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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

// parseFlags parses and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return usageError{}
		}
		return usageError{fmt.Sprintf("%s: %v (see nixpushd %s -h)", fs.Name(), err, fs.Name())}
	}
	return nil
}

// defaultStateDir is /var/lib/nixpushd for root (and systemd's
// StateDirectory), else a per-user directory.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	if os.Geteuid() == 0 {
		return "/var/lib/nixpushd"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "nixpushd")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "nixpushd")
}

// defaultTarget is the cache used when none is configured: a local file://
// directory that `nix copy --from file://…` reads.
func defaultTarget(stateDir string) string {
	return "file://" + filepath.Join(stateDir, "cache")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageError{fmt.Sprintf("--log-level %q: use debug, info, warn or error", s)}
	}
	return l, nil
}

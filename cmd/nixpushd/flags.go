package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// helpShown is returned by parseFlags for -h: run prints text on stdout
// and succeeds (exit 0).
type helpShown struct{ text string }

func (h helpShown) Error() string { return "help requested" }

// commandUsage is the first line of each command's -h.
var commandUsage = map[string]string{
	"init":     "nixpushd init --to URL [flags]",
	"push":     "nixpushd push [flags] PATH...",
	"daemon":   "nixpushd daemon [flags]",
	"hook":     "nixpushd hook [flags]   (or nixpushd-hook, as Nix's post-build-hook)",
	"status":   "nixpushd status [flags]",
	"gc":       "nixpushd gc --to URL [flags]",
	"verify":   "nixpushd verify --to URL [flags] [STORE-PATH...]",
	"pin":      "nixpushd pin add NAME PATH... | pin list | pin rm NAME  [flags]",
	"pin add":  "nixpushd pin add NAME PATH... [flags]",
	"pin list": "nixpushd pin list [flags]",
	"pin rm":   "nixpushd pin rm NAME [flags]",

	"install-hook": "nixpushd install-hook [flags]",
}

// parseFlags parses and turns flag errors into usage errors, and -h into
// helpShown. Flags may come before and after the arguments (`push PATH
// --to URL`, `pin rm NAME --to URL`); `--` ends the flags, and fs.Args()
// then holds every argument in order.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpShown{flagHelp(fs)}
		}
		return usageError{fmt.Sprintf("%s: %v (see nixpushd %s -h)", fs.Name(), err, fs.Name())}
	}
	return nil
}

// parseInterspersed is fs.Parse with flags allowed between arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...) // after "--", everything is an argument
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	// Leaves fs.Args() = pos, and the flags set above as they are.
	return fs.Parse(append([]string{"--"}, pos...))
}

// flagHelp formats a command's flags as docs/reference.md writes them
// (--name VALUE). Unlike flag.PrintDefaults it never takes quoted words
// of the usage text for the value's name.
func flagHelp(fs *flag.FlagSet) string {
	var b strings.Builder
	u := commandUsage[fs.Name()]
	if u == "" {
		u = "nixpushd " + fs.Name() + " [flags]"
	}
	fmt.Fprintf(&b, "usage: %s\n\nflags:\n", u)
	fs.VisitAll(func(f *flag.Flag) {
		arg := "VALUE"
		switch f.Value.(type) {
		case interface{ IsBoolFlag() bool }:
			arg = ""
		}
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case int, int64, uint, uint64:
				arg = "N"
			case time.Duration:
				arg = "DURATION"
			}
		}
		if a, ok := flagArgNames[f.Name]; ok {
			arg = a
		}
		fmt.Fprintf(&b, "  --%s", f.Name)
		if arg != "" {
			fmt.Fprintf(&b, " %s", arg)
		}
		fmt.Fprintf(&b, "\n        %s", f.Usage)
		if d := f.DefValue; d != "" && d != "false" && d != "0" && !strings.Contains(f.Usage, "(default") {
			fmt.Fprintf(&b, " (default %s)", d)
		}
		b.WriteString("\n")
	})
	return b.String()
}

// flagArgNames name the value of flags whose type says little.
var flagArgNames = map[string]string{
	"to": "URL", "secret-key-file": "FILE", "credentials-file": "FILE", "ca-file": "FILE",
	"temp-dir": "DIR", "state-dir": "DIR", "spool-dir": "DIR", "store-dir": "DIR", "nix-db": "FILE",
	"socket": "PATH", "root": "PATH", "log-level": "LEVEL", "compression": "METHOD", "max-temp-size": "SIZE",
	"include": "REGEXP", "exclude": "REGEXP", "skip-signed-by": "KEYNAMES", "pin": "NAME=PATH",
	"status-group": "GROUP", "trusted-public-keys": "KEYS", "keep": "AGE", "grace": "AGE",
	"metrics-listen": "ADDR", "admin-profile": "PROFILE", "admin-credentials-file": "FILE",
	"key-name": "NAME", "writer-user": "USER", "policy-name": "NAME",
	"nix-conf": "FILE", "hook": "PATH",
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageError{fmt.Sprintf("--log-level %q: use debug, info, warn or error", s)}
	}
	return l, nil
}

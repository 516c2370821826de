package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nixpushd/nixpushd/hook"
)

// hookDefaults are the socket and spool the hook uses without flags (Nix's
// post-build-hook takes a bare program path); NIXPUSHD_SOCKET and
// NIXPUSHD_SPOOL_DIR override them.
func hookDefaults() (socket, spool string) {
	socket, spool = defaultSocket(), filepath.Join(defaultStateDir(), "spool")
	if v := os.Getenv("NIXPUSHD_SOCKET"); v != "" {
		socket = v
	}
	if v := os.Getenv("NIXPUSHD_SPOOL_DIR"); v != "" {
		spool = v
	}
	return socket, spool
}

// runHook is Nix's post-build-hook. It never fails the build: every
// problem is reported on stderr (which Nix shows) and it exits 0.
func runHook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hook", flag.ContinueOnError)
	socket, spool := hookDefaults()
	fs.StringVar(&socket, "socket", socket, "the daemon's socket ($NIXPUSHD_SOCKET)")
	fs.StringVar(&spool, "spool-dir", spool, "where to leave the paths when the daemon is down ($NIXPUSHD_SPOOL_DIR)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to try the daemon before spooling")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	out, drv := os.Getenv("OUT_PATHS"), os.Getenv("DRV_PATH")
	if out == "" && drv == "" {
		fmt.Fprintln(stderr, "nixpushd hook: OUT_PATHS is not set; this program is meant to be Nix's post-build-hook (post-build-hook = /path/to/nixpushd-hook in nix.conf)")
		return nil
	}
	res, err := hook.Deliver(ctx, socket, spool, out, drv, *timeout)
	switch {
	case res.Sent > 0:
		fmt.Fprintf(stderr, "nixpushd: queued %s for upload\n", plural(res.Sent, "path"))
	case res.Spooled > 0:
		var refused *hook.ReplyError
		if errors.As(res.SocketErr, &refused) {
			// It answered: not "unreachable", and not gone for good either.
			fmt.Fprintf(stderr, "nixpushd: the daemon at %s refused the paths (%s); saved %s in %s, which it drains when it can queue them\n", socket, refused.Msg, plural(res.Spooled, "path"), res.SpoolFile)
			break
		}
		fmt.Fprintf(stderr, "nixpushd: daemon not reachable at %s; saved %s in %s for when it starts\n", socket, plural(res.Spooled, "path"), res.SpoolFile)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nixpushd hook: %v\n", err)
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/nixpushd/nixpushd/daemon"
	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/journal"
	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
)

// daemonFlags parses the daemon's command line. It is its own function so
// that `daemon --check-config` (used by the NixOS module's tests) runs the
// very parser the service uses.
func daemonFlags(args []string) (*targetOptions, *daemon.Config, bool, error) {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	var o targetOptions
	o.register(fs)
	var c daemon.Config
	var skip, include, exclude, spool string
	fs.StringVar(&c.Socket, "socket", hook.DefaultSocket, "Unix socket for post-build-hook notifications (ignored under systemd socket activation)")
	fs.StringVar(&spool, "spool-dir", "", "directory where `nixpushd hook` leaves paths while the daemon is down (default STATE-DIR/spool)")
	fs.BoolVar(&c.WatchStore, "watch-store", true, "watch /nix/store for new valid paths")
	fs.StringVar(&c.StoreDir, "store-dir", "/nix/store", "the Nix store to watch")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", 5*time.Minute, "how often to look for paths registered without a watcher event")
	fs.StringVar(&skip, "skip-signed-by", daemon.DefaultSkipKey, "comma-separated key names: paths signed by one were downloaded, not built, and are not pushed on their own (empty = push all)")
	fs.BoolVar(&c.PushDerivations, "push-derivations", false, "also push .drv files")
	fs.StringVar(&include, "include", "", "push only paths whose name (after the hash) matches this regular expression")
	fs.StringVar(&exclude, "exclude", "", "do not push paths whose name matches this regular expression")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight uploads may take before they are put back in the queue")
	fs.DurationVar(&c.MaxRetryDelay, "max-retry-delay", 5*time.Minute, "cap of the exponential backoff between retries of a failing upload")
	fs.IntVar(&c.MaxActive, "max-active", 1024, "queue items worked on at once; those claimed together are pushed as one batch")
	var pins pinFlag
	fs.Var(&pins, "pin", "NAME=PATH: keep the pin NAME in the cache pointing at the closure of PATH (e.g. system=/run/current-system), updated as the link changes; repeatable")
	check := fs.Bool("check-config", false, "parse and check the flags, print the configuration, and exit")
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, false, err
	}
	if fs.NArg() > 0 {
		return nil, nil, false, usageError{fmt.Sprintf("daemon: unexpected argument %q (the daemon takes only flags; to push paths use `nixpushd push`)", fs.Arg(0))}
	}
	if err := o.validate(); err != nil {
		return nil, nil, false, err
	}
	c.StateDir = o.stateDir
	c.Pins = pins.m
	c.SpoolDir = spool
	if c.SpoolDir == "" {
		c.SpoolDir = filepath.Join(o.stateDir, "spool")
	}
	for _, k := range strings.Split(skip, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.SkipSignedBy = append(c.SkipSignedBy, k)
		}
	}
	var err error
	if include != "" {
		if c.Include, err = regexp.Compile(include); err != nil {
			return nil, nil, false, usageError{fmt.Sprintf("--include %q: %v", include, err)}
		}
	}
	if exclude != "" {
		if c.Exclude, err = regexp.Compile(exclude); err != nil {
			return nil, nil, false, usageError{fmt.Sprintf("--exclude %q: %v", exclude, err)}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, nil, false, usageError{err.Error()}
	}
	return &o, &c, *check, nil
}

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, c, check, err := daemonFlags(args)
	if err != nil {
		return err
	}
	if check {
		// One line of JSON, every value a string: exact to compare, even
		// for regular expressions with spaces or quotes.
		re := func(r *regexp.Regexp) string {
			if r == nil {
				return ""
			}
			return r.String()
		}
		b, err := json.Marshal(map[string]string{
			"to": o.to, "compression": o.compression, "compression-level": strconv.Itoa(o.level),
			"jobs": strconv.Itoa(o.jobs), "temp-dir": o.tempDir, "state-dir": c.StateDir, "nix-db": o.nixDB,
			"log-level": o.logLevel, "secret-key-file": o.secretKeyFile, "credentials-file": o.credentialsFile,
			"socket": c.Socket, "spool-dir": c.SpoolDir, "watch-store": strconv.FormatBool(c.WatchStore),
			"store-dir": c.StoreDir, "reconcile-interval": c.ReconcileInterval.String(),
			"skip-signed-by": strings.Join(c.SkipSignedBy, ","), "push-derivations": strconv.FormatBool(c.PushDerivations),
			"include": re(c.Include), "exclude": re(c.Exclude), "shutdown-timeout": c.ShutdownTimeout.String(),
			"max-retry-delay": c.MaxRetryDelay.String(), "max-active": strconv.Itoa(c.MaxActive),
			"io-jobs": strconv.Itoa(o.ioJobs), "max-temp-size": strconv.FormatInt(int64(o.maxTempSize), 10),
			"pin": (&pinFlag{c.Pins}).String(),
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "config ok: %s\n", b)
		return nil
	}
	return startDaemon(ctx, o, c, stderr)
}

// daemonLogger logs natively to journald under systemd, as text otherwise.
func daemonLogger(stderr io.Writer, level slog.Level) *slog.Logger {
	if journal.UseJournal() {
		return slog.New(journal.NewHandler(level))
	}
	return newLogger(stderr, level)
}

func startDaemon(ctx context.Context, o *targetOptions, c *daemon.Config, stderr io.Writer) error {
	level, _ := parseLevel(o.logLevel)
	log := daemonLogger(stderr, level)
	slog.SetDefault(log)

	q, err := queue.Open(filepath.Join(c.StateDir, "queue.db"))
	if err != nil {
		return err
	}
	defer q.Close()
	st, err := store.Open(o.nixDB)
	if err != nil {
		return err
	}
	defer st.Close()
	if a, ok := st.(*store.Auto); ok && !a.UsingDB() {
		log.Warn("cannot read the Nix database yet; using `nix path-info` (slower, no reconcile) and retrying every 30s", "db", o.nixDB)
	}
	if o.tempDir == "" {
		o.tempDir = filepath.Join(c.StateDir, "tmp")
	}
	if err := os.MkdirAll(o.tempDir, 0o700); err != nil {
		return fmt.Errorf("--temp-dir: %w", err)
	}
	removeStaleTemp(o.tempDir, log)
	p, err := o.pusher(ctx, log)
	if err != nil {
		return err
	}
	ln, err := hookListener(c.Socket)
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	return daemon.New(c, q, st, p, log).Run(ctx, ln)
}

// hookListener takes the socket systemd passes (socket activation), or
// creates c.Socket. A stale socket file from a crashed daemon is replaced;
// a live one means another daemon runs, which is an error.
func hookListener(path string) (net.Listener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	for _, ln := range lns {
		if ln != nil {
			return ln, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--socket %s: %w", path, err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("--socket %s: another nixpushd daemon is already listening there", path)
	}
	os.Remove(path)
	// 0600: the post-build-hook runs as root; ordinary users may not
	// enqueue.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("--socket %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleTemp deletes compressed NARs left in dir by a killed nixpushd.
// Only files untouched for an hour go: a concurrent `nixpushd push` using
// the same directory keeps its files fresh.
func removeStaleTemp(dir string, log *slog.Logger) {
	files, _ := filepath.Glob(filepath.Join(dir, "nixpushd-*"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && time.Since(st.ModTime()) > time.Hour {
			if os.Remove(f) == nil {
				log.Info("removed a temporary file left by an earlier run", "file", f)
			}
		}
	}
}

// pinFlag collects repeated --pin NAME=PATH.
type pinFlag struct{ m map[string]string }

func (p *pinFlag) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.m)) {
		parts = append(parts, k+"="+p.m[k])
	}
	return strings.Join(parts, ",")
}

func (p *pinFlag) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=PATH, got %q", v)
	}
	if err := lifecycle.CheckPinName(name); err != nil {
		return err
	}
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[name] = path
	return nil
}

package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/daemon"
	"github.com/nixpushd/nixpushd/journal"
	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/metrics"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/queue"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// daemonExtra are the daemon's flags that are not part of daemon.Config.
type daemonExtra struct {
	statusGroup string
	// flagProblems are the flags' problems, kept for --check-config.
	flagProblems []error
}

// daemonFlags parses the daemon's command line. It is its own function so
// that `daemon --check-config` (used by the NixOS module's tests) runs the
// very parser the service uses.
func daemonFlags(args []string) (*targetOptions, *daemon.Config, *daemonExtra, bool, error) {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	var o targetOptions
	o.register(fs)
	var c daemon.Config
	var skip, include, exclude, spool string
	fs.StringVar(&c.Socket, "socket", defaultSocket(), "Unix socket for post-build-hook notifications, ignored under systemd socket activation (default /run/nixpushd/nixpushd.sock as root, else $XDG_RUNTIME_DIR/nixpushd/nixpushd.sock)")
	fs.StringVar(&spool, "spool-dir", "", "directory where 'nixpushd hook' leaves paths while the daemon is down (default STATE-DIR/spool)")
	var x daemonExtra
	fs.StringVar(&x.statusGroup, "status-group", "", "group whose members may run 'nixpushd status' (the socket becomes 0660 with this group); only root and the daemon's user may queue paths")
	fs.BoolVar(&c.WatchStore, "watch-store", true, "watch /nix/store for new valid paths")
	fs.StringVar(&c.StoreDir, "store-dir", "/nix/store", "the Nix store to watch")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", 5*time.Minute, "how often to look for paths registered without a watcher event")
	fs.StringVar(&skip, "skip-signed-by", daemon.DefaultSkipKey, "comma-separated key names: paths signed by one were downloaded, not built, and are not pushed on their own (empty = push all)")
	fs.BoolVar(&c.PushDerivations, "push-derivations", false, "also push .drv files")
	fs.StringVar(&include, "include", "", "push only paths whose name (after the hash) matches this regular expression")
	fs.StringVar(&exclude, "exclude", "", "do not push paths whose name matches this regular expression")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight uploads may take before they are put back in the queue")
	fs.DurationVar(&c.MaxRetryDelay, "max-retry-delay", 5*time.Minute, "cap of the exponential backoff between retries of a failing upload")
	fs.IntVar(&c.MaxActive, "max-active", 8192, "queue items worked on at once; those claimed together are pushed as one batch")
	var pins pinFlag
	fs.Var(&pins, "pin", "NAME=PATH: keep the pin NAME in the cache pointing at the closure of PATH (e.g. system=/run/current-system), updated as the link changes; repeatable")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9101 (empty = off)")
	check := fs.Bool("check-config", false, "check the flags, signing key, credentials, CA file and directories (without the network), print the configuration as one line of JSON, and exit (1 when something would fail)")
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, nil, false, err
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, false, usageError{fmt.Sprintf("daemon: unexpected argument %q (the daemon takes only flags; to push paths use `nixpushd push`)", fs.Arg(0))}
	}
	// Every problem is collected: --check-config reports them all; the
	// daemon itself stops at the first.
	problems := o.problems()
	c.StateDir = o.stateDir
	c.ProbeEvery = knobs.ProbeEvery
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
			problems = append(problems, usageError{fmt.Sprintf("--include %q: %v", include, err)})
		}
	}
	if exclude != "" {
		if c.Exclude, err = regexp.Compile(exclude); err != nil {
			problems = append(problems, usageError{fmt.Sprintf("--exclude %q: %v", exclude, err)})
		}
	}
	for _, err := range c.Problems() {
		problems = append(problems, usageError{err.Error()})
	}
	if c.MetricsListen != "" {
		if err := metrics.CheckAddr(c.MetricsListen); err != nil {
			problems = append(problems, usageError{err.Error()})
		}
	}
	if x.statusGroup != "" {
		if _, err := user.LookupGroup(x.statusGroup); err != nil {
			problems = append(problems, usageError{fmt.Sprintf("--status-group %q: no such group", x.statusGroup)})
		}
	}
	if len(problems) > 0 && !*check {
		return nil, nil, nil, false, problems[0]
	}
	x.flagProblems = problems
	return &o, &c, &x, *check, nil
}

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, c, x, check, err := daemonFlags(args)
	if err != nil {
		return err
	}
	if check {
		var problems []string
		for _, p := range x.flagProblems {
			problems = append(problems, p.Error())
		}
		problems = append(problems, checkDaemonConfig(ctx, o, c)...)
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
			"pin": (&pinFlag{c.Pins}).String(), "metrics-listen": c.MetricsListen, "ca-file": o.caFile, "status-group": x.statusGroup,
			"nar-listings": strconv.FormatBool(o.narListings), "index-debug-info": strconv.FormatBool(o.indexDebugInfo),
			"build-logs": strconv.FormatBool(o.buildLogs), "build-log-dir": o.buildLogDir,
			"realisations": strconv.FormatBool(o.realisations),
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
		for _, p := range problems {
			fmt.Fprintln(stderr, "nixpushd: config:", p)
		}
		if len(x.flagProblems) > 0 {
			// Bad flags are a usage error (exit 2), as without --check-config.
			return usageError{checkFailed{len(problems)}.Error()}
		}
		if len(problems) > 0 {
			return checkFailed{len(problems)}
		}
		return nil
	}
	return startDaemon(ctx, o, c, x, stderr)
}

// daemonLogger logs natively to journald under systemd, as text otherwise.
func daemonLogger(stderr io.Writer, level slog.Level) *slog.Logger {
	if journal.UseJournal() {
		return slog.New(journal.NewHandler(level))
	}
	return newLogger(stderr, level)
}

func startDaemon(ctx context.Context, o *targetOptions, c *daemon.Config, x *daemonExtra, stderr io.Writer) error {
	level, _ := parseLevel(o.logLevel)
	log := daemonLogger(stderr, level)
	slog.SetDefault(log)

	// First everything that can fail on what the operator gave (the
	// socket, the metrics port, the key file, the cache), then what
	// creates files: a daemon that cannot start leaves no key or state
	// directory behind.
	ln, err := hookListener(c.Socket, x.statusGroup)
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	var mln net.Listener
	if c.MetricsListen != "" {
		// A taken port fails the start with one clear line.
		if mln, err = metrics.Listen(c.MetricsListen); err != nil {
			return err
		}
		defer mln.Close()
	}
	// The key is chosen (a new one made in memory) now, and written by
	// startKey only once everything else has passed.
	kc, newKey, err := daemonKey(o)
	if err != nil {
		return err
	}
	c.SecretKeyFile = kc.File
	if o.tempDir == "" {
		o.tempDir = filepath.Join(c.StateDir, "tmp")
	}
	if o.to == defaultTarget(c.StateDir) {
		// Opening the default cache creates it: with the modes
		// prepareStateDir gives it.
		syscall.Umask(0o022)
	}
	p, err := o.pusherWithKey(ctx, log, kc.Key, kc.File)
	if err != nil {
		return err
	}

	if err := prepareStateDir(o, c.StateDir, log); err != nil {
		return err
	}
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
	if err := os.MkdirAll(o.tempDir, 0o700); err != nil {
		return fmt.Errorf("--temp-dir: %w", err)
	}
	removeStaleTemp(o.tempDir, log)
	for _, n := range p.Compressor.Notes() {
		log.Warn(n)
	}
	// Each build's closure repeats most of the last one's: read it from
	// the database once per pusher TTL, not once per batch.
	d := daemon.New(c, q, store.NewCached(st, upload.DefaultPresenceTTL, 50_000), p, log)
	if mln != nil {
		m := metrics.New(metrics.Options{
			Version: version, StateDir: c.StateDir, Log: log,
			Queue: metrics.QueueDepth(q), OldestPending: metrics.OldestPending(q),
			Presence: p.PresenceStats, Degraded: d.Degraded,
		})
		// Before the pusher's first use: its existence checks copy the
		// retry policy when they start.
		p.Retry.Delay = m.CountRetries(p.Retry.Delay)
		if prev := p.OnEvent; prev != nil {
			p.OnEvent = func(e upload.Event) { prev(e); m.Observe(e) }
		} else {
			p.OnEvent = m.Observe
		}
		d.SetMetrics(m)
		// Served through the shutdown drain, until Run returns; stopped
		// before the queue closes (defers run last-in first-out).
		mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := m.ServeListener(mctx, mln); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		defer func() { stopMetrics(); <-served }()
		log.Info("serving Prometheus metrics", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	if err := startKey(ctx, o, p, kc, newKey, log); err != nil {
		return err
	}
	return d.Run(ctx, ln)
}

// hookListener takes the socket systemd passes (socket activation), or
// creates c.Socket. A stale socket file from a crashed daemon is replaced;
// a live one means another daemon runs, which is an error.
func hookListener(path, statusGroup string) (net.Listener, error) {
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
		return nil, socketError(path, err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("--socket %s: another nixpushd daemon is already listening there", path)
	}
	os.Remove(path)
	// 0600: the post-build-hook runs as root; ordinary users may not
	// enqueue. With --status-group, 0660 for that group, whose members
	// may ask STATUS: the server checks the peer's uid before a PUSH.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, socketError(path, err)
	}
	if statusGroup != "" {
		g, err := user.LookupGroup(statusGroup)
		if err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			err = os.Chown(path, -1, gid)
		}
		if err == nil {
			err = os.Chmod(path, 0o660)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("--status-group %s: giving the socket %s to the group: %w", statusGroup, path, err)
		}
	}
	return ln, nil
}

// socketError explains the usual cause of a socket that cannot be made:
// the root-only default run by a normal user.
func socketError(path string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("--socket %s: permission denied: run the daemon as root, or give it a socket in a directory you can write, e.g. --socket $XDG_RUNTIME_DIR/nixpushd/nixpushd.sock (the default when XDG_RUNTIME_DIR is set and you are not root)", path)
	}
	return fmt.Errorf("--socket %s: %w", path, err)
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

// checkFailed is `daemon --check-config` finding problems (exit 1; each
// was printed on stderr).
type checkFailed struct{ n int }

func (c checkFailed) Error() string {
	return fmt.Sprintf("--check-config: %s found; the daemon would fail", plural(c.n, "problem"))
}

// checkDaemonConfig checks, without the network, what the daemon needs
// at start: the signing key, the cache's credentials and CA, and the
// directories it writes. It creates nothing.
func checkDaemonConfig(ctx context.Context, o *targetOptions, c *daemon.Config) []string {
	var problems []string
	add := func(err error) {
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	_, err := o.resolveKey()
	add(err)
	add(writableDir("--state-dir", c.StateDir))
	if o.tempDir != "" {
		add(writableDir("--temp-dir", o.tempDir))
	}
	add(writableDir("--spool-dir", c.SpoolDir))
	if os.Getenv("LISTEN_FDS") == "" {
		add(writableDir("--socket", filepath.Dir(c.Socket)))
	}
	if o.caFile != "" {
		add(checkCAFile(o.caFile))
	}
	if c.WatchStore {
		if st, err := os.Stat(c.StoreDir); err != nil || !st.IsDir() {
			problems = append(problems, fmt.Sprintf("--store-dir %s: not a directory (needed by --watch-store)", c.StoreDir))
		}
	}
	if dir, ok := strings.CutPrefix(o.to, "file://"); ok {
		add(writableDir("--to", dir))
	} else if !o.badTo {
		// (A --to the flags refused is reported once, with them.)
		// Opening an S3 target resolves its credentials and reads the
		// CA file; it sends no request.
		if _, err := o.openTarget(ctx); err != nil {
			problems = append(problems, fmt.Sprintf("--to %s: %v", o.to, err))
		}
	}
	return problems
}

// writableDir reports whether the daemon could write in dir, or create
// it: the nearest existing ancestor decides.
func writableDir(flagName, dir string) error {
	d := dir
	for {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s %s: %s is not a directory", flagName, dir, d)
			}
			if err := syscall.Access(d, 0o2|0o1); err != nil {
				return fmt.Errorf("%s %s: %s is not writable by this user (uid %d): %v", flagName, dir, d, os.Geteuid(), err)
			}
			return nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fmt.Errorf("%s %s: %v", flagName, dir, err)
		}
		d = parent
	}
}

func checkCAFile(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--ca-file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("--ca-file %s: no PEM certificate in it", file)
	}
	return nil
}

// prepareStateDir creates the state directory (the signing key, if one
// is to be made, comes later: startKey). When the cache
// is the default one inside it, the directory (not the queue, key or
// temporary files, which keep their own modes) is made readable by other
// local users, who substitute from it.
func prepareStateDir(o *targetOptions, stateDir string, log *slog.Logger) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	if o.to == defaultTarget(stateDir) {
		// Cache files are created 0644 and directories 0755 whatever
		// umask the service got (UMask=0077 under the NixOS module):
		// everything private here is created with an explicit mode.
		syscall.Umask(0o022)
		cache := strings.TrimPrefix(o.to, "file://")
		if err := nixClientDirs(cache); err != nil {
			return err
		}
		for _, d := range []string{stateDir, cache, filepath.Join(cache, "nar"), filepath.Join(cache, "realisations"), filepath.Join(cache, "log")} {
			if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o055 != 0o055 {
				if err := os.Chmod(d, st.Mode().Perm()|0o055); err != nil {
					log.Warn("cannot make the default cache readable by other users", "dir", d, "err", err)
				} else {
					log.Info("made the default cache readable by other local users", "dir", d)
				}
			}
		}
	}
	return nil
}

// daemonKey is the daemon's signing key by the key rule (resolveKey). When
// the rule finds none, a new key is made in memory, to be written to
// STATE-DIR/secret-key by writeNewKey only once the start can no longer
// fail on a flag, the socket or the metrics port.
func daemonKey(o *targetOptions) (c keyChoice, isNew bool, err error) {
	if c, err = o.resolveKey(); err != nil || c.Key != nil {
		return c, false, err
	}
	if c.Key, err = nar.GenerateSecretKey(keyName()); err != nil {
		return c, false, err
	}
	return c, true, nil
}

// startKey finishes the key at the daemon's start: a name the cache
// records with another public key stops it; a new key is written (never
// over a file) and then recorded. A cache that cannot be asked now is
// asked again before the first upload.
func startKey(ctx context.Context, o *targetOptions, p *upload.Pusher, c keyChoice, isNew bool, log *slog.Logger) error {
	if c.Key == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if isNew {
		have, err := cachekeys.Lookup(cctx, p.Target, c.Key.Name)
		if have != nil && !have.Key.Equal(c.Key.Public().Key) {
			return &cachekeys.ConflictError{Cache: p.Target.String(), Have: have, Want: c.Key.Public(),
				Fix: fmt.Sprintf("reuse that key (copy its secret key to %s), or give a key of another name with --secret-key-file", c.File)}
		}
		if err != nil {
			log.Warn("cannot read the cache's recorded signing keys now; asked again before the first upload", "err", err)
		}
		if err := nar.WriteSecretKeyFile(c.File, c.Key); err != nil {
			return fmt.Errorf("create the signing key: %w", err)
		}
		if err := writePublicKey(o.stateDir, c.Key); err != nil {
			return err
		}
		log.Info("created a signing key for the cache (no --secret-key-file given); clients trust it with trusted-public-keys = "+c.Key.Public().String(),
			"secret_key_file", c.File, "public_key_file", defaultPublicKeyFile(o.stateDir), "public_key", c.Key.Public().String())
	} else if c.File == defaultKeyFile(o.stateDir) {
		if err := writePublicKey(o.stateDir, c.Key); err != nil {
			return err
		}
	}
	logSigningAs(log, c)
	err := p.CheckKey(cctx, p.Target)
	var ce *cachekeys.ConflictError
	if errors.As(err, &ce) {
		return err
	}
	if err != nil {
		log.Warn("cannot record the signing key in the cache now; tried again before the first upload", "err", err)
	}
	return nil
}

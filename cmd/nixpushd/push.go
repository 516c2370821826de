package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/cacheurl"
	"github.com/nixpushd/nixpushd/cache/retry"
	"github.com/nixpushd/nixpushd/cache/s3"
	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/internal/fsutil"
	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/provision"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// targetOptions are the flags shared by push and daemon that say where and
// how to upload.
type targetOptions struct {
	to              string
	compression     string
	level           int
	secretKeyFile   string
	jobs            int
	ioJobs          int
	maxTempSize     sizeFlag
	tempDir         string
	stateDir        string
	nixDB           string
	logLevel        string
	credentialsFile string
	caFile          string
	credentialsEnv  map[string]string // read from credentialsFile by validate
	badTo           bool              // problems found --to unusable: nothing to open
	// readOnly, if set, says (after the flags are parsed) that the
	// command writes nothing: then it may read the cache anonymously
	// when no credentials resolve.
	readOnly func() bool
	// listOptional, if set, says (after the flags are parsed) that the
	// command needs no listing (verify --root).
	listOptional   func() bool
	narListings    bool
	indexDebugInfo bool
	buildLogs      bool
	buildLogDir    string
	realisations   bool
}

func (o *targetOptions) register(fs *flag.FlagSet) {
	o.registerCache(fs)
	tempDefault := "$TMPDIR"
	if fs.Name() == "daemon" {
		tempDefault = "STATE-DIR/tmp"
	}
	fs.StringVar(&o.compression, "compression", "xz", "NAR compression: xz, zstd or none")
	fs.IntVar(&o.level, "compression-level", 0, "zstd level 1-22, or xz preset 1-9 with liblzma, where 7-9 run as 6 (0 = default: zstd 3, xz 2); the pure-Go xz encoder ignores it")
	fs.StringVar(&o.secretKeyFile, "secret-key-file", "", "signing key written by 'nix key generate-secret' (default: init's CONFIG-DIR/secret-key if it exists, else STATE-DIR/secret-key, which the daemon creates on first start; two different default keys are refused)")
	fs.IntVar(&o.jobs, "jobs", runtime.NumCPU(), "NARs serialised and compressed at once (CPU-bound)")
	fs.StringVar(&o.tempDir, "temp-dir", "", "directory for compressed NARs waiting for upload (default "+tempDefault+")")
	o.maxTempSize = upload.DefaultMaxTempSize
	fs.Var(&o.maxTempSize, "max-temp-size", "bytes of compressed NARs waiting in --temp-dir at once (e.g. 4G, 512M); a bigger NAR still goes, alone")
	fs.StringVar(&o.nixDB, "nix-db", store.DefaultDB, "Nix database to read path info from (falls back to 'nix path-info' when unreadable)")
	fs.BoolVar(&o.narListings, "nar-listings", false, "also write <hash>.ls, the JSON listing of each NAR that Nix writes with write-nar-listing=true (used by nix store ls/cat and nix-index); one more small PUT per path")
	fs.BoolVar(&o.indexDebugInfo, "index-debug-info", false, "also write debuginfo/<build-id> links for paths with lib/debug/.build-id/*/*.debug files, as Nix does with index-debug-info=true (for dwarffs/debuginfod)")
	fs.BoolVar(&o.buildLogs, "build-logs", false, "also upload build logs to log/<drv>, read by nix log --store URL: the daemon those of the derivations the post-build-hook reports, push those of its arguments' derivers (logs may hold secrets a build printed)")
	fs.StringVar(&o.buildLogDir, "build-log-dir", store.DefaultLogDir, "Nix's log directory (its logDir), where --build-logs finds drvs/XX/REST[.bz2]")
	fs.BoolVar(&o.realisations, "realisations", true, "also upload the realisations/<drv hash>!<output>.doi of pushed outputs of content-addressed derivations (ca-derivations), signed, as nix copy does; read from the Nix database")
}

// registerCache registers the flags every command that talks to a cache
// takes (gc and verify need no more).
func (o *targetOptions) registerCache(fs *flag.FlagSet) {
	fs.StringVar(&o.to, "to", "", "binary cache URL: s3://BUCKET?endpoint=HOST:PORT&region=R&scheme=http|https&profile=P or file:///DIR (default file://STATE-DIR/cache); verify also reads http(s)://HOST/PATH")
	fs.IntVar(&o.ioJobs, "io-jobs", upload.DefaultIOJobs, "requests to the cache in flight (network-bound)")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "state directory: queue, signing key, default file:// cache (default /var/lib/nixpushd as root, else $XDG_STATE_HOME/nixpushd)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.credentialsFile, "credentials-file", "", "file of KEY=VALUE lines (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, …), e.g. a systemd credential; read by nixpushd only, not exported to child processes")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file of CA certificates to trust for an https S3 endpoint, in addition to the system roots")
	o.jobs = runtime.NumCPU()
	o.compression = "xz"
}

func (o *targetOptions) validate() error {
	if p := o.problems(); len(p) > 0 {
		return p[0]
	}
	return nil
}

// problems checks the options, all of them: --check-config reports every
// problem, not only the first.
func (o *targetOptions) problems() []error {
	var ps []error
	if o.jobs < 1 {
		ps = append(ps, usageError{fmt.Sprintf("--jobs %d: must be at least 1", o.jobs)})
	}
	if o.ioJobs < 1 {
		ps = append(ps, usageError{fmt.Sprintf("--io-jobs %d: must be at least 1", o.ioJobs)})
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		ps = append(ps, err)
	}
	noHome := false
	if o.to == "" && !filepath.IsAbs(o.stateDir) && o.stateDir == defaultStateDir() && os.Getenv("HOME") == "" {
		// The default state directory is under ~ (no XDG_STATE_HOME):
		// without HOME it is a relative path, and the default cache in
		// it is not a --to anyone gave.
		ps = append(ps, errors.New("no --to given, and the default cache is in the state directory ~/.local/state/nixpushd, which cannot be found because HOME is not set: set HOME (or XDG_STATE_HOME), or give --to"))
		noHome = true
	}
	if o.to == "" {
		o.to = defaultTarget(o.stateDir)
	}
	if o.credentialsFile != "" {
		env, err := loadEnvFile(o.credentialsFile)
		if err != nil {
			ps = append(ps, err)
		}
		o.credentialsEnv = env
	}
	nToProblems := len(ps)
	if noHome {
		nToProblems--
	}
	if strings.HasPrefix(o.to, "http://") || strings.HasPrefix(o.to, "https://") {
		if o.readOnly == nil || !o.readOnly() {
			ps = append(ps, usageError{fmt.Sprintf("--to %q: an http(s):// cache can only be read (verify); to write, use its s3://BUCKET?endpoint=HOST:PORT or file:///DIR URL", o.to)})
		}
	} else if strings.HasPrefix(o.to, "s3://") {
		if _, err := s3.ParseURL(o.to); err != nil {
			ps = append(ps, usageError{err.Error()})
		}
	} else if dir, ok := strings.CutPrefix(o.to, "file://"); !noHome && (!ok || !filepath.IsAbs(dir)) {
		ps = append(ps, usageError{fmt.Sprintf("--to %q: use s3://BUCKET?endpoint=HOST:PORT or file:///DIR", o.to)})
	}
	o.badTo = len(ps) > nToProblems
	if _, err := compression.New(compression.Options{Method: o.compression, Level: o.level, Threads: 1}); err != nil {
		ps = append(ps, usageError{"--compression: " + err.Error()})
	}
	return ps
}

// openTarget opens the cache with the CA and credentials the flags give.
func (o *targetOptions) openTarget(ctx context.Context) (cache.Target, error) {
	anon := o.readOnly != nil && o.readOnly()
	return cacheurl.Open(ctx, o.to, cacheurl.Options{CAFile: o.caFile, Env: o.credentialsEnv, EnvFile: o.credentialsFile, ReadEnvFile: loadEnvFile, MinPartSize: knobs.PartSize, Anonymous: anon})
}

// pusher builds the upload pipeline the options describe.
func (o *targetOptions) pusher(ctx context.Context, log *slog.Logger) (*upload.Pusher, error) {
	c, err := o.signingKey(log)
	if err != nil {
		return nil, err
	}
	return o.pusherWithKey(ctx, log, c.Key, c.File)
}

// checkCacheKey is the Pusher's CheckKey: the cache records key's public
// half under its name (recorded now if new); another public key under
// that name stops every push, as a configuration error.
func checkCacheKey(key *nar.SecretKey, keyFile string, log *slog.Logger) func(context.Context, cache.Target) error {
	return func(ctx context.Context, t cache.Target) error {
		recorded, err := cachekeys.Record(ctx, t, key.Public())
		var ce *cachekeys.ConflictError
		if errors.As(err, &ce) {
			ce.Fix = fmt.Sprintf("reuse that key (copy its secret key to %s), or sign with a key of another name (--secret-key-file)", keyFile)
			return &cache.PermanentError{Err: ce, Config: true}
		}
		if err != nil {
			return err
		}
		if recorded {
			log.Info("recorded the public key in the cache", "key_name", key.Name, "object", cachekeys.ObjectKey(key.Name), "public_key", key.Public().String())
		}
		return nil
	}
}

// pusherWithKey is pusher, signing with key (nil: unsigned) read from
// keyFile.
func (o *targetOptions) pusherWithKey(ctx context.Context, log *slog.Logger, key *nar.SecretKey, keyFile string) (*upload.Pusher, error) {
	target, err := o.openTarget(ctx)
	if err != nil {
		return nil, err
	}
	comp, err := compression.New(compression.Options{Method: o.compression, Level: o.level, PureGoXZ: knobs.PureGoXZ})
	if err != nil {
		return nil, err
	}
	locker, err := cachelock.New(target, knobs.LockStale, log)
	if err != nil {
		return nil, err
	}
	var check func(context.Context, cache.Target) error
	if key != nil {
		check = checkCacheKey(key, keyFile, log)
	}
	memoDir := ""
	if filepath.IsAbs(o.stateDir) {
		memoDir = filepath.Join(o.stateDir, "signed")
	}
	return &upload.Pusher{
		CheckKey:    check,
		SignPresent: true,
		// The state directory is per machine (or per user): the memo of
		// narinfos found signed saves a re-push reading each of them.
		SignedMemoDir: memoDir,
		Target:        target,
		Compressor:    comp,
		Key:           key,
		Jobs:          o.jobs,
		IOJobs:        o.ioJobs,
		MaxTempSize:   int64(o.maxTempSize),
		Locker:        locker,
		TempDir:       o.tempDir,
		Log:           log,
		Retry:         retry.Default,
		NarListings:   o.narListings,
		DebugInfo:     o.indexDebugInfo,
		BuildLogDir:   o.buildLogDirIfOn(),
		Realisations:  o.realisations,
	}, nil
}

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	var o targetOptions
	o.register(fs)
	quiet := fs.Bool("quiet", false, "no progress display")
	viaDaemon := fs.Bool("via-daemon", false, "hand the paths to the running daemon's queue instead of uploading here")
	socket, _ := hookDefaults()
	fs.StringVar(&socket, "socket", socket, "the daemon's socket, for --via-daemon")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*viaDaemon {
		// --via-daemon uploads nothing here: the cache flags do not apply.
		if err := o.validate(); err != nil {
			return err
		}
	}
	if fs.NArg() == 0 {
		return usageError{"push: name at least one store path (or a symlink to one, like ./result)"}
	}
	level, _ := parseLevel(o.logLevel)
	tty := isTerminal(stderr) && !*quiet
	if tty && level < slog.LevelWarn {
		level = slog.LevelWarn // the progress line replaces per-path logs
	}
	log := newLogger(stderr, level)

	roots, err := storePathArgs(fs.Args())
	if err != nil {
		return err
	}
	if *viaDaemon {
		return pushViaDaemon(ctx, socket, roots, stderr)
	}

	st, err := store.Open(o.nixDB)
	if err != nil {
		return err
	}
	defer st.Close()
	closure, err := st.Closure(ctx, roots)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	p, err := o.pusher(ctx, log)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if dir, ok := strings.CutPrefix(o.to, "file://"); ok {
		if err := nixClientDirs(dir); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}

	if err := pushAndReport(ctx, p, closure, tty, stderr); err != nil {
		return fmt.Errorf("push to %s: %w", p.Target, err)
	}
	if err := pushRealisations(ctx, p, st, closure, stderr); err != nil {
		return fmt.Errorf("push to %s: %w", p.Target, err)
	}
	if err := pushBuildLogs(ctx, p, roots, closure, stderr); err != nil {
		return fmt.Errorf("push to %s: %w", p.Target, err)
	}
	return nil
}

// pushAndReport pushes closure with p behind a progress display, prints
// the summary line, and names each path that failed.
func pushAndReport(ctx context.Context, p *upload.Pusher, closure []*store.PathInfo, tty bool, stderr io.Writer) error {
	start := time.Now()
	prog := newProgress(stderr, tty, len(closure), &p.NarBytes)
	p.OnEvent = prog.event
	stopProg := prog.run()
	res, err := p.Push(ctx, closure)
	stopProg()
	p.OnEvent = nil
	fmt.Fprintln(stderr, summary(res, p, time.Since(start), err))
	for _, path := range slices.Sorted(maps.Keys(res.NotSigned)) {
		fmt.Fprintf(stderr, "cached but not signed by %s: %s: %s\n", p.Key.Name, path, res.NotSigned[path])
	}
	if err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		for _, path := range slices.Sorted(maps.Keys(res.Failed)) {
			fmt.Fprintf(stderr, "failed: %v\n", res.Failed[path])
		}
		return fmt.Errorf("%d of %s failed", len(res.Failed), plural(res.Total, "path"))
	}
	return nil
}

// storePathArgs resolves push's arguments to store paths, naming every
// one that is not (not only the first).
func storePathArgs(args []string) ([]string, error) {
	var roots, bad []string
	for _, a := range args {
		if abs, err := filepath.Abs(a); err == nil && strings.TrimSuffix(abs, "/") == nar.StoreDir {
			bad = append(bad, fmt.Sprintf("%s is the store itself; name a path in it, like %s/HASH-NAME or ./result", a, nar.StoreDir))
			continue
		}
		p, err := store.ToStorePath(a)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		roots = append(roots, p)
	}
	switch len(bad) {
	case 0:
		return slices.Compact(slices.Sorted(slices.Values(roots))), nil
	case 1:
		return nil, fmt.Errorf("push: %s", bad[0])
	}
	return nil, fmt.Errorf("push: %d arguments are not store paths:\n  %s", len(bad), strings.Join(bad, "\n  "))
}

// summary is push's last line. Its counts add up to the closure's size,
// and a push that stopped (err) does not begin with "pushed".
func summary(res *upload.Result, p *upload.Pusher, elapsed time.Duration, err error) string {
	failed := len(res.Failed)
	rest := res.Total - res.Uploaded - res.Present - res.Signed - failed
	head := fmt.Sprintf("pushed %s to %s", plural(res.Total, "path"), p.Target)
	if err != nil || failed > 0 {
		head = fmt.Sprintf("push of %s to %s incomplete", plural(res.Total, "path"), p.Target)
	}
	s := fmt.Sprintf("%s: %d uploaded, %d already cached", head, res.Uploaded, res.Present)
	if res.Signed > 0 {
		s += fmt.Sprintf(", %d signed", res.Signed)
	}
	if n := len(res.NotSigned); n > 0 {
		s += fmt.Sprintf(" (%d without our signature: see below)", n)
	}
	if failed > 0 || err != nil {
		s += fmt.Sprintf(", %d failed", failed)
	}
	if rest > 0 {
		s += fmt.Sprintf(", %d not attempted", rest)
	}
	// The files written with the NARs (--nar-listings, --index-debug-info).
	if res.NarListings > 0 {
		s += ", " + plural(res.NarListings, "NAR listing")
	}
	if res.DebugInfoLinks > 0 {
		s += ", " + plural(res.DebugInfoLinks, "debug-info link")
	}
	if res.Uploaded > 0 {
		rate := float64(res.NarBytes) / elapsed.Seconds()
		s += fmt.Sprintf("; %s NAR → %s %s", lifecycle.HumanBytes(res.NarBytes), lifecycle.HumanBytes(res.FileBytes), p.Compressor)
		if res.ReusedNARs > 0 {
			s += fmt.Sprintf(" (%s already stored)", plural(res.ReusedNARs, "NAR file"))
		}
		s += fmt.Sprintf(" in %.1fs (%s/s)", elapsed.Seconds(), lifecycle.HumanBytes(int64(rate)))
	} else {
		s += fmt.Sprintf(" in %.1fs", elapsed.Seconds())
	}
	return s
}

// pushViaDaemon enqueues roots in the daemon; it computes closures itself.
func pushViaDaemon(ctx context.Context, socket string, roots []string, stderr io.Writer) error {
	added := 0
	for _, batch := range hook.Batches(roots) {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := hook.Push(rctx, socket, batch)
		cancel()
		if err != nil {
			return fmt.Errorf("push --via-daemon: %w (is `nixpushd daemon` running with --socket %s?)", err, socket)
		}
		added += n
	}
	fmt.Fprintf(stderr, "queued %s in the daemon (%d were already queued); follow with `nixpushd status` or journalctl -u nixpushd\n", plural(added, "path"), len(roots)-added)
	return nil
}

// sizeFlag is a byte count written as 4G, 512M, 64K or plain bytes
// (binary units; a trailing "iB" or "B" is accepted).
type sizeFlag int64

func (s *sizeFlag) String() string { return lifecycle.HumanBytes(int64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(v)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes like 4G, 512M or 1048576", v)
	}
	return n * mult, nil
}

// defaultKeyFile is the signing key used when no --secret-key-file is
// given and init wrote none; the daemon creates it on its first start.
func defaultKeyFile(stateDir string) string { return filepath.Join(stateDir, "secret-key") }

// defaultPublicKeyFile is written next to it, readable by all, for
// clients' trusted-public-keys.
func defaultPublicKeyFile(stateDir string) string { return filepath.Join(stateDir, "public-key") }

// keyName is the name of a generated key: HOST-nixpushd-1.
func keyName() string {
	h, _ := os.Hostname()
	return provision.DefaultKeyName(h)
}

// keyHowto is the command that creates a secret key in file: pasted as
// it is, it works on Nix 2.8, leaves the key readable by its owner only,
// and never replaces an existing file (noclobber: clients may trust it).
func keyHowto(file string) string {
	return fmt.Sprintf("(umask 077; set -o noclobber; mkdir -p %s; nix --extra-experimental-features nix-command key generate-secret --key-name %s > %s)",
		shellQuote(filepath.Dir(file)), keyName(), shellQuote(file))
}

// initKeyFile is the signing key `nixpushd init` writes by default.
func initKeyFile() string { return filepath.Join(defaultConfigDir(), "secret-key") }

// keyChoice is the signing key push, the daemon, verify --repair and
// status use, and where it comes from.
type keyChoice struct {
	Key  *nar.SecretKey // nil: none found (unsigned)
	File string         // the file it was read from; with no Key, where one would be created
}

// resolveKey is the one rule for the signing key: --secret-key-file;
// else init's file (CONFIG-DIR/secret-key) if it exists; else the state
// directory's (which the daemon creates on first start). Two default
// files holding different keys are refused: nothing says which one
// clients trust.
func (o *targetOptions) resolveKey() (keyChoice, error) {
	if o.secretKeyFile != "" {
		k, err := loadSecretKey(o.secretKeyFile, o.stateDir)
		return keyChoice{Key: k, File: o.secretKeyFile}, err
	}
	initFile, stateFile := initKeyFile(), defaultKeyFile(o.stateDir)
	if filepath.Clean(initFile) == filepath.Clean(stateFile) || !exists(initFile) {
		if !exists(stateFile) {
			return keyChoice{File: stateFile}, nil
		}
		k, err := loadSecretKey(stateFile, o.stateDir)
		return keyChoice{Key: k, File: stateFile}, err
	}
	k, err := loadSecretKey(initFile, o.stateDir)
	if err != nil || !exists(stateFile) {
		return keyChoice{Key: k, File: initFile}, err
	}
	other, err := nar.LoadSecretKeyFile(stateFile)
	if err == nil && other.Public().String() == k.Public().String() {
		return keyChoice{Key: k, File: initFile}, nil
	}
	name := "unreadable"
	if err == nil {
		name = other.Name
	}
	return keyChoice{}, fmt.Errorf("two default signing keys differ: %s (%s, written by init) and %s (%s, made by the daemon's first start); give the one clients trust with --secret-key-file, and move the other away",
		initFile, k.Name, stateFile, name)
}

// signingKey is resolveKey for push and the daemon: it says once which
// key signs, or warns that nothing does.
func (o *targetOptions) signingKey(log *slog.Logger) (keyChoice, error) {
	c, err := o.resolveKey()
	if err != nil {
		return c, err
	}
	if c.Key == nil {
		log.Warn("no signing key: paths are uploaded unsigned, and clients accept them only with require-sigs = false; give --secret-key-file, or create a key with " + keyHowto(c.File) + " (the daemon creates that one on its first start)")
		return c, nil
	}
	logSigningAs(log, c)
	return c, nil
}

// logSigningAs is the one line that says which key signs.
func logSigningAs(log *slog.Logger, c keyChoice) {
	log.Info(fmt.Sprintf("signing as %s (from %s)", c.Key.Name, c.File), "key_name", c.Key.Name, "secret_key_file", c.File)
}

// repairKey is signingKey without the log lines: the key repair signs
// with (nil if none), and the file where one would be looked for.
func (o *targetOptions) repairKey() (*nar.SecretKey, string, error) {
	c, err := o.resolveKey()
	return c.Key, c.File, err
}

// nearbyKeys are the secret key files in file's directory and in the
// default places, other than file: what a typo'd path most likely meant.
func nearbyKeys(file, stateDir string) []string {
	var out []string
	seen := map[string]bool{filepath.Clean(file): true}
	add := func(f string) {
		f = filepath.Clean(f)
		if seen[f] {
			return
		}
		seen[f] = true
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() || st.Size() > 4096 {
			return
		}
		if k, err := nar.LoadSecretKeyFile(f); err == nil {
			out = append(out, fmt.Sprintf("%s (%s)", f, k.Name))
		}
	}
	dir := file
	if st, err := os.Stat(file); err != nil || !st.IsDir() {
		dir = filepath.Dir(file)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) <= 256 {
		for _, e := range ents {
			add(filepath.Join(dir, e.Name()))
		}
	}
	add(initKeyFile())
	if stateDir != "" {
		add(defaultKeyFile(stateDir))
	}
	return out
}

// loadSecretKey reads a secret key, with a hint that never suggests
// writing over the file given (it may be the public key), nor a new key
// where an existing one was likely meant.
func loadSecretKey(file, stateDir string) (*nar.SecretKey, error) {
	k, err := nar.LoadSecretKeyFile(file)
	if err == nil {
		return k, nil
	}
	if st, serr := os.Stat(file); serr == nil && st.IsDir() {
		if near := nearbyKeys(file, stateDir); len(near) > 0 {
			return nil, fmt.Errorf("--secret-key-file %s is a directory, not a key file; signing keys here: %s: give one of them", file, strings.Join(near, ", "))
		}
		return nil, fmt.Errorf("--secret-key-file %s is a directory, not a key file: give the file 'nix key generate-secret' wrote (init writes %s)", file, initKeyFile())
	}
	other := filepath.Join(filepath.Dir(file), "secret-key")
	if other == filepath.Clean(file) {
		other += ".new"
	}
	var pke *nar.PublicKeyError
	switch {
	case errors.Is(err, os.ErrNotExist):
		if near := nearbyKeys(file, stateDir); len(near) > 0 {
			return nil, fmt.Errorf("--secret-key-file %s does not exist; existing signing keys: %s: give the one clients trust (a new key would have to be added to every client's trusted-public-keys)", file, strings.Join(near, ", "))
		}
		return nil, fmt.Errorf("--secret-key-file %s does not exist; create it with %s", file, keyHowto(file))
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("--secret-key-file %s: permission denied (it should be readable by the user running nixpushd only)", file)
	case errors.As(err, &pke):
		return nil, fmt.Errorf("--secret-key-file %s holds the public key %s, not a secret key: give the file that 'nix key generate-secret' wrote, or make a new key pair with %s", file, pke.Name, keyHowto(other))
	}
	msg := nar.ErrorReason(err)
	var ke *nar.KeyError
	if errors.As(err, &ke) && ke.File != "" {
		msg = ke.File + ": " + ke.Msg // the flag's name says what the file is
	}
	return nil, fmt.Errorf("--secret-key-file %s; give the file that 'nix key generate-secret' wrote, or make a new one with %s", msg, keyHowto(other))
}

// writePublicKey keeps STATE-DIR/public-key (0644) in step with the key.
func writePublicKey(stateDir string, k *nar.SecretKey) error {
	f := defaultPublicKeyFile(stateDir)
	want := k.Public().String() + "\n"
	if b, err := os.ReadFile(f); err == nil && string(b) == want {
		return nil
	}
	// 0644 whatever the umask: clients need to read it.
	if err := fsutil.WriteFileAtomic(f, []byte(want), 0o644); err != nil {
		return fmt.Errorf("write the public key: %w", err)
	}
	return nil
}

// buildLogDirIfOn is the Pusher's BuildLogDir: empty without --build-logs.
func (o *targetOptions) buildLogDirIfOn() string {
	if !o.buildLogs {
		return ""
	}
	return o.buildLogDir
}

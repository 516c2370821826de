package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/queue"
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
}

func (o *targetOptions) register(fs *flag.FlagSet) {
	o.registerCache(fs)
	fs.StringVar(&o.compression, "compression", "xz", "NAR compression: xz, zstd or none")
	fs.IntVar(&o.level, "compression-level", 0, "zstd level 1-22, or xz preset 1-9 with liblzma (0 = default: zstd 3, xz 2)")
	fs.StringVar(&o.secretKeyFile, "secret-key-file", "", "signing key written by `nix key generate-secret` (unsigned when empty)")
	fs.IntVar(&o.jobs, "jobs", runtime.NumCPU(), "NARs serialised and compressed at once (CPU-bound)")
	fs.StringVar(&o.tempDir, "temp-dir", "", "directory for compressed NARs waiting for upload (default $TMPDIR)")
	o.maxTempSize = upload.DefaultMaxTempSize
	fs.Var(&o.maxTempSize, "max-temp-size", "bytes of compressed NARs waiting in --temp-dir at once (e.g. 4G, 512M); a bigger NAR still goes, alone")
	fs.StringVar(&o.nixDB, "nix-db", store.DefaultDB, "Nix database to read path info from (falls back to `nix path-info` when unreadable)")
}

// registerCache registers the flags every command that talks to a cache
// takes (gc and verify need no more).
func (o *targetOptions) registerCache(fs *flag.FlagSet) {
	fs.StringVar(&o.to, "to", "", "binary cache URL: s3://BUCKET?endpoint=HOST:PORT&region=R&scheme=http|https&profile=P or file:///DIR (default file://STATE-DIR/cache)")
	fs.IntVar(&o.ioJobs, "io-jobs", upload.DefaultIOJobs, "requests to the cache in flight (network-bound)")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "state directory (queue, default file:// cache)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.credentialsFile, "credentials-file", "", "file of KEY=VALUE lines (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, …), e.g. a systemd credential; read by nixpushd only, not exported to child processes")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file of CA certificates to trust for an https S3 endpoint, in addition to the system roots")
	o.jobs = runtime.NumCPU()
	o.compression = "xz"
}

func (o *targetOptions) validate() error {
	if o.jobs < 1 {
		return usageError{fmt.Sprintf("--jobs %d: must be at least 1", o.jobs)}
	}
	if o.ioJobs < 1 {
		return usageError{fmt.Sprintf("--io-jobs %d: must be at least 1", o.ioJobs)}
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return err
	}
	if o.to == "" {
		o.to = defaultTarget(o.stateDir)
	}
	if o.credentialsFile != "" {
		env, err := loadEnvFile(o.credentialsFile)
		if err != nil {
			return err
		}
		o.credentialsEnv = env
	}
	if strings.HasPrefix(o.to, "s3://") {
		if _, err := upload.ParseS3URL(o.to); err != nil {
			return usageError{err.Error()}
		}
	} else if dir, ok := strings.CutPrefix(o.to, "file://"); !ok || !filepath.IsAbs(dir) {
		return usageError{fmt.Sprintf("--to %q: use s3://BUCKET?endpoint=HOST:PORT or file:///DIR", o.to)}
	}
	if _, err := upload.NewCompressor(o.compression, o.level, 1); err != nil {
		return usageError{"--compression: " + err.Error()}
	}
	return nil
}

// openTarget opens the cache with the CA and credentials the flags give.
func (o *targetOptions) openTarget(ctx context.Context) (upload.Target, error) {
	return upload.OpenWith(ctx, o.to, upload.Options{CAFile: o.caFile, Env: o.credentialsEnv})
}

// pusher builds the upload pipeline the options describe.
func (o *targetOptions) pusher(ctx context.Context, log *slog.Logger) (*upload.Pusher, error) {
	target, err := o.openTarget(ctx)
	if err != nil {
		return nil, err
	}
	comp, err := upload.NewCompressor(o.compression, o.level, 0)
	if err != nil {
		return nil, err
	}
	var key *nar.SecretKey
	if o.secretKeyFile != "" {
		if key, err = nar.LoadSecretKeyFile(o.secretKeyFile); err != nil {
			return nil, err
		}
	} else {
		log.Warn("no --secret-key-file: paths are uploaded unsigned, and clients accept them only with require-sigs = false; create a key with `nix key generate-secret --key-name HOST-1 > FILE`")
	}
	return &upload.Pusher{
		Target:      target,
		Compressor:  comp,
		Key:         key,
		Jobs:        o.jobs,
		IOJobs:      o.ioJobs,
		MaxTempSize: int64(o.maxTempSize),
		Locker:      upload.NewLocker(target, log),
		TempDir:     o.tempDir,
		Log:         log,
		Retry: upload.RetryPolicy{
			Attempts: 5,
			Delay: func(n int) time.Duration {
				return queue.Backoff(n, 500*time.Millisecond, 10*time.Second, rand64)
			},
		},
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
	if err := o.validate(); err != nil {
		return err
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

	var roots []string
	for _, a := range fs.Args() {
		p, err := store.ToStorePath(a)
		if err != nil {
			return fmt.Errorf("push: %w", err)
		}
		roots = append(roots, p)
	}
	roots = slices.Compact(slices.Sorted(slices.Values(roots)))
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

	if err := pushAndReport(ctx, p, closure, tty, stderr); err != nil {
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
	fmt.Fprintln(stderr, summary(res, p, time.Since(start)))
	if err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		for _, path := range slices.Sorted(mapsKeys(res.Failed)) {
			fmt.Fprintf(stderr, "failed: %v\n", res.Failed[path])
		}
		return fmt.Errorf("%d of %d paths failed", len(res.Failed), res.Total)
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func summary(res *upload.Result, p *upload.Pusher, elapsed time.Duration) string {
	rate := float64(res.NarBytes) / elapsed.Seconds()
	s := fmt.Sprintf("pushed %d paths to %s: %d uploaded, %d already cached, %d failed; %s NAR → %s %s in %.1fs (%s/s)",
		res.Total, p.Target, res.Uploaded, res.Present, len(res.Failed),
		lifecycle.HumanBytes(res.NarBytes), lifecycle.HumanBytes(res.FileBytes), p.Compressor, elapsed.Seconds(), lifecycle.HumanBytes(int64(rate)))
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
	fmt.Fprintf(stderr, "queued %d paths in the daemon (%d were already queued); follow with `nixpushd status` or journalctl -u nixpushd\n", added, len(roots)-added)
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

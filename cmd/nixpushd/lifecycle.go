package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cachekeys"
	"github.com/nixpushd/nixpushd/cachelock"
	"github.com/nixpushd/nixpushd/compression"
	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/metrics"
	"github.com/nixpushd/nixpushd/nar"
	"github.com/nixpushd/nixpushd/store"
	"github.com/nixpushd/nixpushd/upload"
)

// ageFlag is a duration that also takes days ("30d"), as retention
// periods are written.
type ageFlag struct{ d *time.Duration }

func (a ageFlag) String() string {
	if a.d == nil {
		return ""
	}
	if *a.d%(24*time.Hour) == 0 && *a.d > 0 {
		return strconv.Itoa(int(*a.d/(24*time.Hour))) + "d"
	}
	s := a.d.String() // "1h0m0s" reads better as "1h"
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (a ageFlag) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	*a.d = d
	return nil
}

// parseAge parses "30d", "12h", "1h30m", "0".
func parseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 100*365 {
			return 0, fmt.Errorf("want whole days like 30d, or a duration like 12h or 90m")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want whole days like 30d, or a duration like 12h or 90m")
	}
	return d, nil
}

// openCommand does what gc, verify and pin share: it parses args into fs
// (o's flags registered on it), refuses positional arguments when
// noArgs, checks the options, and opens the logger and the --to cache,
// which must be listable.
func openCommand(ctx context.Context, fs *flag.FlagSet, o *targetOptions, args []string, noArgs bool, stderr io.Writer) (*slog.Logger, cache.Target, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if noArgs && fs.NArg() > 0 {
		return nil, nil, usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	if err := o.validate(); err != nil {
		return nil, nil, err
	}
	level, _ := parseLevel(o.logLevel)
	log := newLogger(stderr, level)
	t, err := o.openTarget(ctx)
	if err == nil && (o.listOptional == nil || !o.listOptional()) {
		if _, ok := t.(cache.Lister); !ok {
			err = fmt.Errorf("%s cannot be listed", t)
			if fs.Name() == "verify" {
				err = fmt.Errorf("%s cannot be listed: name the store paths to check (verify --root PATH, or as arguments), and verify walks their closures", t)
			}
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", strings.Fields(fs.Name())[0], err)
	}
	return log, t, nil
}

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	var o targetOptions
	o.registerCache(fs)
	keep, grace := 30*24*time.Hour, time.Hour
	fs.Var(ageFlag{&keep}, "keep", "narinfos written within this age are roots, kept with their closures (30d, 12h, …)")
	fs.Var(ageFlag{&grace}, "grace", "NAR files younger than this are never deleted, referenced or not")
	dryRun := fs.Bool("dry-run", false, "print what would be deleted and how many bytes, delete nothing (works with read access only, anonymously if no credentials resolve)")
	o.readOnly = func() bool { return *dryRun }
	log, t, err := openCommand(ctx, fs, &o, args, true, stderr)
	if err != nil {
		return err
	}
	locker, err := cachelock.New(t, knobs.LockStale, log)
	if err != nil {
		return err
	}
	opts := lifecycle.GCOptions{Keep: keep, Grace: grace, DryRun: *dryRun, Jobs: o.ioJobs, Log: log, Locker: locker}
	start := time.Now()
	// The plan holds the exclusive lock (but for a dry run) until Execute
	// releases it.
	var res *lifecycle.GCResult
	plan, err := lifecycle.PlanGC(ctx, t, opts)
	if err == nil && *dryRun {
		for _, d := range plan.Deletions() {
			fmt.Fprintf(stdout, "would delete %s (%s)\n", d.Key, lifecycle.HumanBytes(d.Size))
		}
		res = plan.Result()
	} else if err == nil {
		res, err = plan.Execute(ctx)
	}
	if !*dryRun {
		recordRun(log, o.stateDir, "gc", metrics.GCRun(start, time.Now(), res, err))
	}
	if err != nil {
		if res != nil {
			fmt.Fprintf(stderr, "gc %s: interrupted after %s\n", t, res)
		}
		return err
	}
	verb := "gc"
	if *dryRun {
		verb = "gc --dry-run (nothing deleted)"
	}
	fmt.Fprintf(stderr, "%s %s (keep %s, grace %s): %s\n", verb, t, ageFlag{&keep}, ageFlag{&grace}, res)
	return nil
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var o targetOptions
	o.register(fs)
	keys := fs.String("trusted-public-keys", "", "space-separated public keys, as nix.conf writes them: every narinfo must carry a valid signature by one (empty: signatures not checked)")
	full := fs.Bool("full", false, "also download every NAR and check FileHash, NarHash and NarSize")
	repair := fs.Bool("repair", false, "upload again, from the local store, what is missing or bad (needs the writer's credentials, and the signing key to rewrite a signed narinfo)")
	dryRun := fs.Bool("dry-run", false, "with --repair: print what repair would do, change nothing")
	o.readOnly = func() bool { return !*repair || *dryRun }
	var rootArgs stringsFlag
	fs.Var(&rootArgs, "root", "store path (or ./result) whose closure to verify, walked from narinfo to narinfo without listing the cache (repeatable; positional arguments too): for http(s):// caches, or without s3:ListBucket")
	o.listOptional = func() bool { return len(rootArgs) > 0 || fs.NArg() > 0 }
	log, t, err := openCommand(ctx, fs, &o, args, false, stderr)
	if err != nil {
		return err
	}
	roots, err := rootPaths(append(slices.Clone(rootArgs), fs.Args()...))
	if err != nil {
		return usageError{"verify: " + err.Error()}
	}
	if *dryRun && !*repair {
		return usageError{"verify: --dry-run only applies to --repair (verify alone changes nothing)"}
	}
	var trusted []*nar.PublicKey
	for _, k := range strings.Fields(*keys) {
		pk, err := nar.ParsePublicKey(k)
		if err != nil {
			return usageError{fmt.Sprintf("--trusted-public-keys: %v", err)}
		}
		trusted = append(trusted, pk)
	}
	sigsLine, err := verifyKeys(ctx, t, &trusted)
	if err != nil && len(roots) > 0 && !errors.As(err, new(usageError)) {
		// --root is for caches that cannot be listed: nor can the records.
		sigsLine, err = "signatures: not checked (no --trusted-public-keys, and the cache's recorded keys cannot be listed): give the clients' --trusted-public-keys", nil
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var problems []lifecycle.Problem
	start := time.Now()
	vo := lifecycle.VerifyOptions{TrustedKeys: trusted, Full: *full, Jobs: o.ioJobs, Log: log, Roots: roots,
		Note: func(n lifecycle.Note) { fmt.Fprintln(stderr, "note: "+n.String()) }}
	res, err := lifecycle.Verify(ctx, t, vo, func(p lifecycle.Problem) {
		fmt.Fprintln(stdout, p)
		problems = append(problems, p)
	})
	recordRun(log, o.stateDir, "verify", metrics.VerifyRun(start, time.Now(), res, err))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s: %s\n", t, res)
	fmt.Fprintln(stderr, sigsLine)
	if res.Problems == 0 {
		return nil
	}
	if !*repair {
		return fmt.Errorf("verify: %s in %s (run again with --repair to upload what the local store has)", plural(res.Problems, "problem"), t)
	}
	return repairCache(ctx, &o, log, t, trusted, problems, *dryRun, stderr)
}

// verifyKeys settles which keys verify checks signatures against:
// --trusted-public-keys, else the keys the cache records (cachekeys). A
// recorded key whose name --trusted-public-keys gives with another public
// key is an error: one of them is not the cache's. It returns the line
// that says what was checked.
func verifyKeys(ctx context.Context, t cache.Target, trusted *[]*nar.PublicKey) (string, error) {
	recorded, err := cachekeys.List(ctx, t)
	if err != nil && ctx.Err() != nil {
		return "", err
	}
	// A reader that may not read the records (anonymous, list-only) gets
	// verify's own diagnosis of what it may not do, not this one.
	unreadable := err != nil
	names := func(ks []*nar.PublicKey) string {
		var n []string
		for _, k := range ks {
			n = append(n, k.Name)
		}
		return strings.Join(n, ", ")
	}
	if len(*trusted) > 0 {
		for _, r := range recorded {
			for _, k := range *trusted {
				if k.Name == r.Name && !k.Key.Equal(r.Key) {
					return "", usageError{fmt.Sprintf("--trusted-public-keys gives %s, but the cache records %s for that name (%s): one of them is another machine's key; trust the one the cache's narinfos are signed with", k, r, cachekeys.ObjectKey(r.Name))}
				}
			}
		}
		return "signatures: checked against --trusted-public-keys (" + names(*trusted) + ")", nil
	}
	if len(recorded) > 0 {
		*trusted = recorded
		return "signatures: checked against the keys the cache records (" + names(recorded) + "; give --trusted-public-keys to check against the clients' keys)", nil
	}
	if unreadable {
		return "signatures: not checked (no --trusted-public-keys, and the cache's recorded keys cannot be read): give the clients' --trusted-public-keys", nil
	}
	return "signatures: not checked (no --trusted-public-keys, and the cache records no keys): give the clients' --trusted-public-keys", nil
}

// stringsFlag is a flag that may be given many times.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, " ") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// rootPaths turns verify's roots into store paths: a store path is taken
// as it is (the local store need not have it), anything else (./result)
// is resolved.
func rootPaths(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if rest, ok := strings.CutPrefix(a, nar.StoreDir+"/"); ok {
			base, _, _ := strings.Cut(rest, "/")
			if sp, err := nar.ParseStorePath(nar.StoreDir + "/" + base); err == nil {
				out = append(out, sp.String())
				continue
			}
		}
		p, err := store.ToStorePath(a)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return slices.Compact(slices.Sorted(slices.Values(out))), nil
}

// repairCache plans the repair of problems in lifecycle (the weakest
// change per path, never a narinfo weaker than the one it replaces),
// prints the plan, and carries it out unless dryRun or a rewrite lacks
// its key.
func repairCache(ctx context.Context, o *targetOptions, log *slog.Logger, t cache.Target, trusted []*nar.PublicKey, problems []lifecycle.Problem, dryRun bool, stderr io.Writer) error {
	st, err := store.Open(o.nixDB)
	if err != nil {
		return err
	}
	defer st.Close()
	key, keyFile, err := o.repairKey()
	if err != nil {
		return fmt.Errorf("verify --repair: %w", err)
	}
	plan, err := lifecycle.PlanRepair(ctx, t, problems, lifecycle.RepairOptions{
		Key: key, TrustedKeys: trusted, Store: st, TempDir: o.tempDir,
		Compression: compression.Options{Method: o.compression, Level: o.level, PureGoXZ: knobs.PureGoXZ},
	})
	if err != nil {
		return fmt.Errorf("verify --repair: %w", err)
	}
	defer plan.Close()
	would := "repair: "
	if dryRun {
		would = "would repair: "
	}
	for _, a := range plan.Actions {
		fmt.Fprintln(stderr, would+a.String())
	}
	for _, u := range plan.Unrepairable {
		fmt.Fprintln(stderr, "cannot repair "+u)
	}
	if len(plan.Refused) > 0 {
		for _, r := range plan.Refused {
			fmt.Fprintln(stderr, "refused: "+r.String())
		}
		return fmt.Errorf("verify --repair: refused for %s: only a new narinfo (or realisation) repairs it, and without a signing key it would be weaker than the signed one in the cache; nothing was changed. Give the key they are signed with: --secret-key-file FILE (or put it at %s, where push and the daemon look)", plural(len(plan.Refused), "path"), keyFile)
	}
	if dryRun {
		fmt.Fprintf(stderr, "verify --repair --dry-run: %d actions planned, nothing changed\n", len(plan.Actions))
		if len(plan.Unrepairable) > 0 {
			return fmt.Errorf("verify --repair: %s", unrepairable(len(plan.Unrepairable)))
		}
		return nil
	}
	var p *upload.Pusher
	if key == nil && slices.ContainsFunc(plan.Actions, func(a lifecycle.RepairAction) bool { return a.Kind == lifecycle.ActionRealisation }) {
		log.Warn("no signing key: the realisations repair writes carry only the local store's signatures; nothing signed is replaced: give --secret-key-file, or create " + keyFile)
	}
	for _, a := range plan.Actions {
		if a.Kind == lifecycle.ActionRewrite || a.Kind == lifecycle.ActionPush {
			if key == nil {
				log.Warn("no signing key: the narinfos repair writes (for paths missing, or whose narinfo is unsigned or unparsable today) are unsigned; nothing signed is replaced, but clients with require-sigs reject them: give --secret-key-file, or create " + keyFile)
			}
			if p, err = o.pusherWithKey(ctx, log, key, keyFile); err != nil {
				return fmt.Errorf("verify --repair: %w", err)
			}
			break
		}
	}
	res, err := lifecycle.ExecuteRepair(ctx, t, p, st, plan)
	if err != nil {
		return fmt.Errorf("verify --repair: %w", err)
	}
	line := fmt.Sprintf("repaired: %s uploaded again (%d in their closures already cached), %s restored under their narinfo's URL", plural(res.Uploaded, "path"), res.Present, plural(res.NARs, "NAR file"))
	if res.Realisations+res.Links+res.Deleted > 0 {
		line += fmt.Sprintf(", %s and %s written, %s deleted", plural(res.Realisations, "realisation"), plural(res.Links, "debuginfo link"), plural(res.Deleted, "object"))
	}
	fmt.Fprintln(stderr, line)
	if len(res.Failed) > 0 {
		for _, k := range slices.Sorted(maps.Keys(res.Failed)) {
			fmt.Fprintf(stderr, "failed: %v\n", res.Failed[k])
		}
		return fmt.Errorf("verify --repair: %d of the paths and objects could not be repaired (the \"failed:\" lines say why)", len(res.Failed))
	}
	if len(plan.Unrepairable) > 0 {
		return fmt.Errorf("verify --repair: %s", unrepairable(len(plan.Unrepairable)))
	}
	return nil
}

// unrepairable says that n problems are left, and where the lines saying
// what they need are.
func unrepairable(n int) string {
	return fmt.Sprintf("%s what this run cannot do (the \"cannot repair\" lines say what: the paths from another machine, or deleting with the gc user's credentials)", problemsNeed(n))
}

func runPin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const pinUsage = "usage: nixpushd pin add NAME STORE-PATH... | pin list | pin rm NAME  [flags]"
	if len(args) == 0 {
		return usageError{pinUsage}
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fs := flag.NewFlagSet("pin", flag.ContinueOnError)
		var o targetOptions
		o.register(fs)
		fs.Bool("quiet", false, "no progress display while pushing the closure")
		return helpShown{flagHelp(fs)}
	}
	fs := flag.NewFlagSet("pin "+sub, flag.ContinueOnError)
	var o targetOptions
	o.register(fs)
	quiet := fs.Bool("quiet", false, "no progress display while pushing the closure")
	log, t, err := openCommand(ctx, fs, &o, args, false, stderr)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if fs.NArg() > 0 {
			return usageError{pinUsage}
		}
		pins, err := lifecycle.ListPins(ctx, t)
		if err != nil {
			return fmt.Errorf("pin list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, p := range pins {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, strings.Join(p.Paths, " "), p.LastModified.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	case "rm":
		if fs.NArg() != 1 {
			return usageError{pinUsage}
		}
		if err := lifecycle.RemovePin(ctx, t, fs.Arg(0)); err != nil {
			return fmt.Errorf("pin rm: %w", err)
		}
		fmt.Fprintf(stderr, "removed pin %s from %s; gc no longer keeps its closure unless something else does\n", fs.Arg(0), t)
		return nil
	case "add":
		if fs.NArg() < 2 {
			return usageError{pinUsage}
		}
		name := fs.Arg(0)
		if err := lifecycle.CheckPinName(name); err != nil {
			return usageError{err.Error()}
		}
		var roots []string
		for _, a := range fs.Args()[1:] {
			p, err := store.ToStorePath(a)
			if err != nil {
				return fmt.Errorf("pin add: %w", err)
			}
			roots = append(roots, p)
		}
		roots = slices.Compact(slices.Sorted(slices.Values(roots)))
		p, err := o.pusher(ctx, log)
		if err != nil {
			return fmt.Errorf("pin add: %w", err)
		}
		if err := pushClosure(ctx, &o, p, roots, *quiet, stderr); err != nil {
			return fmt.Errorf("pin add %s: %w", name, err)
		}
		if err := lifecycle.SetPin(ctx, p, name, roots); err != nil {
			return fmt.Errorf("pin add %s: %w", name, err)
		}
		fmt.Fprintf(stderr, "pinned %s → %s in %s\n", name, strings.Join(roots, " "), t)
		return nil
	}
	return usageError{fmt.Sprintf("pin: unknown subcommand %q; %s", sub, pinUsage)}
}

// pushClosure pushes roots' closures with p, as `nixpushd push` does.
func pushClosure(ctx context.Context, o *targetOptions, p *upload.Pusher, roots []string, quiet bool, stderr io.Writer) error {
	st, err := store.Open(o.nixDB)
	if err != nil {
		return err
	}
	defer st.Close()
	closure, err := st.Closure(ctx, roots)
	if err != nil {
		return err
	}
	return pushAndReport(ctx, p, closure, isTerminal(stderr) && !quiet, stderr)
}

// recordRun leaves a gc or verify result in the state directory for the
// daemon's metrics. Without a state directory (a manual run elsewhere)
// there is nobody to tell.
func recordRun(log *slog.Logger, stateDir, command string, r metrics.RunResult) {
	if err := metrics.WriteLastRun(stateDir, command, r); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("cannot record the result for metrics", "command", command, "err", err)
	}
}

// problemsNeed writes "1 problem needs", "2 problems need".
func problemsNeed(n int) string {
	if n == 1 {
		return "1 problem needs"
	}
	return plural(n, "problem") + " need"
}

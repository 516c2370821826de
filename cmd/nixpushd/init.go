package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sys/unix"

	"github.com/nixpushd/nixpushd/cache/s3"
	"github.com/nixpushd/nixpushd/provision"
)

// initOptions are the flags of `nixpushd init`.
type initOptions struct {
	to, adminProfile, adminCredentialsFile  string
	keyName, writerUser, policyName         string
	secretKeyFile, credentialsFile, caFile  string
	public, force, newWriterSecret, noHints bool
	createBucket                            bool
	writerUserGiven                         bool // --writer-user was on the command line
}

func (o *initOptions) register(fs *flag.FlagSet) {
	dir := defaultConfigDir()
	fs.StringVar(&o.to, "to", "", "the cache to set up: s3://BUCKET?endpoint=HOST:PORT&region=R&scheme=http|https (required)")
	fs.StringVar(&o.adminProfile, "admin-profile", "", "admin credentials: this profile of the AWS credentials file (default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment)")
	fs.StringVar(&o.adminCredentialsFile, "admin-credentials-file", "", "admin credentials: file of AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY= (or MinIO's MINIO_ROOT_USER=/MINIO_ROOT_PASSWORD=) lines")
	fs.StringVar(&o.keyName, "key-name", "", "name of a new signing key (default HOST-nixpushd-1, this machine's host name: unique per builder, as Nix keeps one trusted key per name)")
	fs.StringVar(&o.writerUser, "writer-user", "nixbuilder", "the least-privilege user that pushes (created on MinIO)")
	fs.StringVar(&o.policyName, "policy-name", "", "name of the writer's policy on MinIO (default BUCKET-write, nix-cache-write for nix-cache)")
	fs.BoolVar(&o.createBucket, "create-bucket", false, "create the bucket if it does not exist (without it, init asks on a terminal and otherwise stops, so a typo in --to makes no new bucket)")
	fs.BoolVar(&o.public, "public", false, "let anyone download from the bucket (as `mc anonymous set download`), so clients need no credentials")
	fs.StringVar(&o.secretKeyFile, "secret-key-file", filepath.Join(dir, "secret-key"), "the signing key, created (0600) if missing; the file push and daemon read")
	fs.StringVar(&o.credentialsFile, "credentials-file", filepath.Join(dir, "aws-credentials"), "the writer's credentials, written (0600) when init creates the user; the file push and daemon read")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file of CA certificates to trust for an https endpoint, in addition to the system roots")
	fs.BoolVar(&o.force, "force", false, "replace a nix-cache-info, anonymous policy or writer policy that differs from the guides', and with --new-writer-secret an existing --credentials-file (never the signing key)")
	fs.BoolVar(&o.newWriterSecret, "new-writer-secret", false, "give an existing writer user a new secret and write it to --credentials-file, which must not exist unless --force (machines using the old secret stop working)")
	fs.BoolVar(&o.noHints, "quiet", false, "print the steps only, not the public key and configuration snippets")
}

// runInit sets up a cache from nothing: every server-side step of the
// seed guides, the signing key and the writer's credentials file.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	var o initOptions
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { o.writerUserGiven = o.writerUserGiven || f.Name == "writer-user" })
	cfg, err := o.config(os.Getenv)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Setting up %s\n", provision.CacheURL(cfg.Target))
	cfg.OnStep = func(s provision.Step) { fmt.Fprintln(stdout, formatStep(s)) }
	if !o.createBucket && stdinIsTTY() {
		cfg.ConfirmCreateBucket = func(bucket, host string) bool {
			return confirm(os.Stdin, stderr, fmt.Sprintf("Bucket %s does not exist on %s. Create it? [y/N] ", bucket, host))
		}
	}
	res, err := provision.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if n := res.Changed(); n == 0 {
		fmt.Fprintln(stdout, "Nothing changed: everything was already set up.")
	} else {
		fmt.Fprintf(stdout, "%s changed.\n", plural(n, "step"))
	}
	if !o.noHints {
		fmt.Fprint(stdout, hints(cfg, res))
	}
	return nil
}

// config turns the flags into a provision.Config; getenv is os.Getenv
// (a parameter for tests).
func (o *initOptions) config(getenv func(string) string) (provision.Config, error) {
	var cfg provision.Config
	if o.to == "" {
		return cfg, usageError{"init: --to s3://BUCKET?endpoint=HOST:PORT is required (see nixpushd init -h)"}
	}
	if strings.HasPrefix(o.to, "file://") {
		return cfg, usageError{"init: a file:// cache needs no setup (push creates it); init sets up an s3:// bucket"}
	}
	t, err := s3.ParseURL(o.to)
	if err != nil {
		return cfg, usageError{"init: " + err.Error()}
	}
	if o.adminProfile != "" && o.adminCredentialsFile != "" {
		return cfg, usageError{"init: use either --admin-profile or --admin-credentials-file, not both"}
	}
	admin, source, err := adminCredentials(o.adminProfile, o.adminCredentialsFile, getenv)
	if err != nil {
		return cfg, err
	}
	name := o.keyName
	if name == "" {
		name = keyName()
	}
	if err := provision.ValidUserName(o.writerUser); err != nil {
		return cfg, usageError{"init: " + err.Error()}
	}
	cfg = provision.Config{
		Target:          t,
		Admin:           admin,
		AdminSource:     source,
		CAFile:          o.caFile,
		Public:          o.public,
		CreateBucket:    o.createBucket,
		Force:           o.force,
		WriterUser:      o.writerUser,
		WriterUserGiven: o.writerUserGiven,
		PolicyName:      o.policyName,
		NewWriterSecret: o.newWriterSecret,
		KeyName:         name,
	}
	// Absolute paths: they go into the printed NixOS snippet.
	for _, p := range []struct {
		dst       *string
		src, flag string
	}{
		{&cfg.SecretKeyFile, o.secretKeyFile, "--secret-key-file"},
		{&cfg.CredentialsFile, o.credentialsFile, "--credentials-file"},
	} {
		if p.src == "" {
			return cfg, usageError{fmt.Sprintf("init: %s must name a file", p.flag)}
		}
		if *p.dst, err = filepath.Abs(p.src); err != nil {
			return cfg, fmt.Errorf("init: %s: %w", p.flag, err)
		}
	}
	if cfg.ExistingWriter, err = readWriterCredentials(cfg.CredentialsFile); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// adminCredentials finds the admin's keys: --admin-credentials-file,
// --admin-profile, else the environment. source names where they came
// from, for error messages.
func adminCredentials(profile, file string, getenv func(string) string) (c provision.Credentials, source string, err error) {
	switch {
	case file != "":
		source = "--admin-credentials-file " + file
		f, err := os.Open(file)
		if err != nil {
			return c, source, fmt.Errorf("init: --admin-credentials-file: %w", err)
		}
		defer f.Close()
		vars, err := parseEnvFile(f)
		if err != nil {
			return c, source, fmt.Errorf("init: --admin-credentials-file %s: %w", file, err)
		}
		env := map[string]string{}
		for _, kv := range vars {
			env[kv[0]] = kv[1]
		}
		c = provision.Credentials{AccessKey: env["AWS_ACCESS_KEY_ID"], SecretKey: env["AWS_SECRET_ACCESS_KEY"], SessionToken: env["AWS_SESSION_TOKEN"]}
		if c.AccessKey == "" && c.SecretKey == "" {
			// MinIO's own environment file (/etc/default/minio).
			c = provision.Credentials{AccessKey: env["MINIO_ROOT_USER"], SecretKey: env["MINIO_ROOT_PASSWORD"]}
		}
		if c.AccessKey == "" || c.SecretKey == "" {
			return c, source, fmt.Errorf("init: --admin-credentials-file %s: want AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY= lines (or MINIO_ROOT_USER= and MINIO_ROOT_PASSWORD=)", file)
		}
	case profile != "":
		path := getenv("AWS_SHARED_CREDENTIALS_FILE")
		if path == "" {
			home, _ := os.UserHomeDir()
			path = filepath.Join(home, ".aws", "credentials")
		}
		source = fmt.Sprintf("--admin-profile %s in %s", profile, path)
		v, err := (&credentials.FileAWSCredentials{Filename: path, Profile: profile}).RetrieveWithCredContext(nil)
		if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
			return c, source, fmt.Errorf("init: --admin-profile %s: no aws_access_key_id/aws_secret_access_key under [%s] in %s", profile, profile, path)
		}
		c = provision.Credentials{AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken}
	default:
		source = "AWS_ACCESS_KEY_ID"
		c = provision.Credentials{AccessKey: getenv("AWS_ACCESS_KEY_ID"), SecretKey: getenv("AWS_SECRET_ACCESS_KEY"), SessionToken: getenv("AWS_SESSION_TOKEN")}
		if c.AccessKey == "" || c.SecretKey == "" {
			return c, source, usageError{"init: no admin credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (e.g. MinIO's root user), or use --admin-profile P or --admin-credentials-file F"}
		}
	}
	return c, source, nil
}

// readWriterCredentials reads an existing writer credentials file (nil,
// nil when there is none) with the parser push uses.
func readWriterCredentials(path string) (*provision.Credentials, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("init: --credentials-file: %w", err)
	}
	defer f.Close()
	vars, err := parseEnvFile(f)
	if err != nil {
		return nil, fmt.Errorf("init: --credentials-file %s: %w", path, err)
	}
	var c provision.Credentials
	for _, kv := range vars {
		switch kv[0] {
		case "AWS_ACCESS_KEY_ID":
			c.AccessKey = kv[1]
		case "AWS_SECRET_ACCESS_KEY":
			c.SecretKey = kv[1]
		case "AWS_SESSION_TOKEN":
			c.SessionToken = kv[1]
		}
	}
	if c.AccessKey == "" {
		return nil, fmt.Errorf("init: --credentials-file %s exists but has no AWS_ACCESS_KEY_ID= line: fix it, or move it away to let init write a new one", path)
	}
	return &c, nil
}

// stdinIsTTY reports whether someone can answer a question: a terminal,
// not merely a character device such as /dev/null.
func stdinIsTTY() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
	return err == nil
}

// confirm asks a yes/no question; anything but y or yes is no.
func confirm(in io.Reader, out io.Writer, question string) bool {
	fmt.Fprint(out, question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// stepWidth aligns the statuses of the usual steps.
const stepWidth = 36

func formatStep(s provision.Step) string {
	line := fmt.Sprintf("  %-*s %s", stepWidth, s.Name, s.Status)
	if s.Detail != "" {
		line += ": " + s.Detail
	}
	return line
}

func indent(s string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	return "  " + strings.Join(lines, "  ") + "\n"
}

// hints is what to do next: the public key, the clients' and the builder's
// configuration, and a first push.
func hints(cfg provision.Config, res *provision.Result) string {
	var b strings.Builder
	subst := provision.SubstituterURL(cfg.Target, res.Public)
	cacheURL := provision.CacheURL(cfg.Target)
	if res.ManualPolicy != nil {
		fmt.Fprintf(&b, "\nThis server has no MinIO admin API. Create the writer user %s with this policy by hand\n(the seed guides' nix-cache-write.json, without the Principal that IAM rejects in a user policy):\n%s",
			cfg.WriterUser, indent(string(res.ManualPolicy)))
	}
	fmt.Fprintf(&b, "\nPublic key: %s\n", res.PublicKey)
	fmt.Fprintf(&b, "\nEvery client, in its NixOS configuration:\n%s", indent(provision.NixSettings(subst, res.PublicKey)))
	fmt.Fprintf(&b, "or, without NixOS, in /etc/nix/nix.conf:\n%s", indent(provision.NixConf(subst, res.PublicKey)))
	if !res.Public {
		b.WriteString("The bucket is not public: Nix on each client needs read credentials for it\n(nix-daemon reads root's ~/.aws/credentials), or re-run init with --public.\n")
	}
	fmt.Fprintf(&b, "\nThe building machine, with the nixpushd NixOS module:\n%s",
		indent(provision.ServiceSnippet(cacheURL, cfg.CredentialsFile, cfg.SecretKeyFile, cfg.CAFile)))
	ca := ""
	if cfg.CAFile != "" {
		ca = " --ca-file " + shellQuote(cfg.CAFile)
	}
	fmt.Fprintf(&b, "or push by hand:\n  nixpushd push --to %s --credentials-file %s --secret-key-file %s%s /run/current-system\n",
		shellQuote(cacheURL), shellQuote(cfg.CredentialsFile), shellQuote(cfg.SecretKeyFile), ca)
	return b.String()
}

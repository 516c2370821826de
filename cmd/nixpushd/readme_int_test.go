package main

// Issue 11, "How it is shown": the snippets of README.md and docs/*.md are
// run as written, against a real MinIO and real Nix, with the few
// substitutions in readmeSubsts (each must still match, so a changed page
// fails here instead of drifting). Console sessions are replayed and their
// output compared with the real output, up to what changes from run to run.
// Each test names the file and heading it reads (docSection).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/provision/policy"
)

// ---------------------------------------------------------------- parsing

// mdBlock is one fenced code block: its info string ("sh", "console", ""…)
// and its text, ending in a newline.
type mdBlock struct {
	info, text string
}

// docSection is a section of the documentation: a file relative to the
// repository root (README.md, docs/setup.md…) and one of its headings.
type docSection struct {
	file, heading string
}

func (s docSection) String() string { return fmt.Sprintf("%s %q", s.file, s.heading) }

// docFiles lists README.md and docs/*.md, relative to the repository root.
func docFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, f := range files {
		out = append(out, "docs/"+filepath.Base(f))
	}
	return out
}

// readmeSection returns the fenced code blocks under the section's heading
// (e.g. "## Quick start" of README.md), up to the next heading of the same
// or a higher level; subsections are included. A heading the file lacks
// fails the test, naming the files that have it.
func readmeSection(t testing.TB, sec docSection) []mdBlock {
	t.Helper()
	heading := sec.heading
	b, err := os.ReadFile("../../" + sec.file)
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(heading, ' ')
	var blocks []mdBlock
	in, fenced := false, false
	var cur *mdBlock
	for _, line := range strings.SplitAfter(string(b), "\n") {
		trimmed := strings.TrimRight(line, "\n")
		if fenced {
			if trimmed == "```" {
				fenced = false
				blocks = append(blocks, *cur)
				continue
			}
			cur.text += trimmed + "\n"
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			n := strings.IndexByte(trimmed, ' ')
			if trimmed == heading {
				in = true
				continue
			}
			if in && n > 0 && n <= level && strings.Trim(trimmed[:n], "#") == "" {
				break
			}
		}
		if in && strings.HasPrefix(trimmed, "```") {
			fenced = true
			cur = &mdBlock{info: strings.TrimPrefix(trimmed, "```")}
		}
	}
	if !in {
		var has []string
		for _, f := range docFiles(t) {
			if b, err := os.ReadFile("../../" + f); err == nil && f != sec.file && slices.Contains(strings.Split(string(b), "\n"), heading) {
				has = append(has, f)
			}
		}
		where := "nor has any of README.md and docs/*.md"
		if len(has) > 0 {
			where = strings.Join(has, " and ") + " has it"
		}
		t.Fatalf("%s has no heading %q (%s): update the docSection in readme_int_test.go", sec.file, heading, where)
	}
	return blocks
}

// ofKind returns the blocks with the info string.
func ofKind(blocks []mdBlock, info string) []mdBlock {
	var out []mdBlock
	for _, b := range blocks {
		if b.info == info {
			out = append(out, b)
		}
	}
	return out
}

// shellWords splits a command line as sh would (quotes, backslashes), up
// to an unquoted comment.
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			w.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				w.WriteByte(line[i])
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			w.WriteByte(line[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// consoleStep is one prompt line of a console block and the output shown
// under it.
type consoleStep struct {
	cmd    string
	output []string
}

// consoleSteps splits console blocks at their "# " and "$ " prompts.
func consoleSteps(blocks []mdBlock) []consoleStep {
	var steps []consoleStep
	for _, b := range blocks {
		for _, line := range strings.Split(strings.TrimRight(b.text, "\n"), "\n") {
			if strings.HasPrefix(line, "# ") || strings.HasPrefix(line, "$ ") {
				steps = append(steps, consoleStep{cmd: line[2:]})
				continue
			}
			if len(steps) > 0 {
				last := &steps[len(steps)-1]
				last.output = append(last.output, line)
			}
		}
	}
	for i := range steps {
		for n := len(steps[i].output); n > 0 && strings.TrimSpace(steps[i].output[n-1]) == ""; n-- {
			steps[i].output = steps[i].output[:n-1]
		}
	}
	return steps
}

// ----------------------------------------------------------- substitution

// subst is one documentation → test replacement, applied to the snippets
// of one section. Output of console sessions is mapped back (new → old)
// before it is compared with the page, unless oneWay.
type subst struct {
	section  docSection
	old, new string
	re       *regexp.Regexp // instead of old, when set
	why      string
	oneWay   bool
	matched  int
}

// readmeEnv is what the snippets run in: a MinIO of their own (so the
// documentation's names, nix-cache and nixbuilder, are used as they are),
// a bin directory first in PATH, and temp directories for the paths the
// pages name under /etc, /var/lib and /tmp.
type readmeEnv struct {
	m        *testenv.MinIO
	work     string // the snippets' working directory
	home     string
	etc      string // stands for /etc/nixpushd (not created: the snippets must)
	state    string // stands for /var/lib/nixpushd
	makeDir  string // the Makefile, and ./nixpushd for `make run`
	binDir   string
	password string // the writer's <PASSWORD>
	closed   string // an endpoint nothing listens on
	env      []string
	substs   []*subst
	// runAs prefixes the snippets' commands (setpriv, to run as nobody).
	runAs []string
}

func newReadmeEnv(t *testing.T) *readmeEnv {
	t.Helper()
	testenv.RequireNix(t)
	m := testenv.StartMinIO(t)
	// Other users may enter it: the Quick start's copy runs as nobody.
	root := worldDir(t)
	e := &readmeEnv{
		m:        m,
		work:     filepath.Join(root, "work"),
		home:     filepath.Join(root, "home"),
		etc:      filepath.Join(root, "etc-nixpushd"),
		state:    filepath.Join(root, "state"),
		makeDir:  filepath.Join(root, "make"),
		binDir:   filepath.Join(root, "bin"),
		password: randomSecret(t),
		closed:   closedEndpoint(t),
	}
	for _, d := range []string{e.work, e.home, e.makeDir, e.binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mc := m.MCCommand(context.Background()).Path
	for name, target := range map[string]string{"nixpushd": bin, "nixpushd-hook": bin, "mc": mc} {
		if err := os.Symlink(target, filepath.Join(e.binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// `make run` runs ./nixpushd beside the Makefile (make -o build: it is
	// already built). This one is the test binary, kept off the machine's
	// /run/nixpushd and /var/lib/nixpushd by two flags after the README's.
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.makeDir, "Makefile"), mk, 0o644)
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %q \"$@\" --state-dir %q --socket %q\n", bin, e.state, filepath.Join(root, "nixpushd.sock"))
	os.WriteFile(filepath.Join(e.makeDir, "nixpushd"), []byte(wrapper), 0o755)

	e.env = append(cleanEnv(),
		"PATH="+e.binDir+":"+os.Getenv("PATH"),
		"HOME="+e.home,
		"XDG_CACHE_HOME="+filepath.Join(root, "cache"),
		// Not testenv.NixEnv: the snippets must enable nix-command
		// themselves, as on a stock Nix 2.8.
		"NIX_CONFIG=build-users-group =\nsandbox = false\nsubstituters =\nnarinfo-cache-negative-ttl = 0\nnarinfo-cache-positive-ttl = 0",
		// The guides' mc alias "s3", with the root user; a private config.
		"MC_CONFIG_DIR="+filepath.Join(root, "mc"),
		"MC_HOST_s3=http://"+m.RootUser+":"+m.RootPassword+"@"+m.Endpoint,
		"MC_NO_COLOR=1", "MC_DISABLE_PAGER=1",
	)
	return e
}

// randomSecret is a writer secret MinIO accepts (8 to 40 characters).
func randomSecret(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// closedEndpoint is 127.0.0.1:PORT with nothing listening (for the
// "connection refused" example of docs/setup.md).
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// apply runs the section's substitutions over text, counting matches.
func (e *readmeEnv) apply(section docSection, text string) string {
	for _, s := range e.substs {
		if s.section != section {
			continue
		}
		if s.re != nil {
			s.matched += len(s.re.FindAllStringIndex(text, -1))
			text = s.re.ReplaceAllLiteralString(text, s.new)
			continue
		}
		s.matched += strings.Count(text, s.old)
		text = strings.ReplaceAll(text, s.old, s.new)
	}
	return text
}

// unapply maps real output back into the documentation's terms.
func (e *readmeEnv) unapply(section docSection, text string) string {
	for i := len(e.substs) - 1; i >= 0; i-- {
		s := e.substs[i]
		if s.section != section || s.re != nil || s.oneWay || s.new == "" {
			continue
		}
		if strings.Contains(text, s.new) {
			s.matched++ // an output-only rule (the key's host name)
		}
		text = strings.ReplaceAll(text, s.new, s.old)
	}
	return text
}

// checkSubsts fails for every substitution of the sections that matched
// nothing: the documentation changed, and the test must follow it.
func (e *readmeEnv) checkSubsts(t *testing.T, section docSection) {
	t.Helper()
	for _, s := range e.substs {
		if s.section == section && s.matched == 0 {
			what := s.old
			if s.re != nil {
				what = s.re.String()
			}
			t.Errorf("documentation drift: the substitution of %q (%s) matches nothing in %s any more; update readmeSubsts", what, s.why, section)
		}
	}
}

// The sections whose snippets run, and where they are.
var (
	secQuick = docSection{"README.md", "## Quick start"}
	secZero  = docSection{"docs/setup.md", "## From zero to a working cache"}
	secPush  = docSection{"docs/setup.md", "## Pushing to MinIO by hand: `nixpushd push`"}
)

// readmeSubsts is every change made to the documented snippets before they
// run, by section. Nothing else is changed.
func (e *readmeEnv) readmeSubsts(result, helloPath string) {
	ep := e.m.Endpoint
	e.substs = []*subst{
		// Quick start.
		{section: secQuick, old: "sudo ", new: "", why: "the tests run as root", oneWay: true},
		{section: secQuick, re: regexp.MustCompile(`(?m)^make test\b.*$`), new: ": make test is this test suite", why: "the test suite would run itself"},
		{section: secQuick, old: "make run", new: "make -C " + e.makeDir + " --no-print-directory -o build run", why: "the Makefile beside the test binary; run in the background until ready"},
		{section: secQuick, old: "/var/lib/nixpushd", new: e.state, why: "the daemon's state directory is a temp dir (the make wrapper passes --state-dir)"},
		{section: secQuick, old: "/etc/nixpushd", new: e.etc, why: "the key lives in a temp dir"},
		{section: secQuick, old: "127.0.0.1:9000", new: ep, why: "the test's MinIO"},
		{section: secQuick, old: "/nix/store/…-hello-2.12", new: helloPath, why: "a path built while the daemon runs"},

		// Pushing to MinIO by hand.
		{section: secPush, old: "sudo ", new: "", why: "the tests run as root", oneWay: true},
		{section: secPush, old: "<PASSWORD>", new: e.password, why: "the writer's secret"},
		{section: secPush, old: "<nixbuildersecret>", new: e.password, why: "the same secret, in the profile"},
		{section: secPush, old: "/etc/nixpushd", new: e.etc, why: "the key lives in a temp dir"},
		{section: secPush, old: "endpoint=s3.homelab.local&", new: "endpoint=" + ep + "&scheme=http&", why: "the test's MinIO, over http"},
		{section: secPush, old: "/run/current-system", new: result, why: "a symlink to a freshly built closure"},

		// From zero (console sessions, compared both ways).
		{section: secZero, old: "127.0.0.1:9001", new: e.closed, why: "a port nothing listens on"},
		{section: secZero, old: "127.0.0.1:9000", new: ep, why: "the test's MinIO"},
		{section: secZero, old: "minioadmin", new: e.m.RootUser, why: "the test MinIO's root user"},
		{section: secZero, old: "<MinIO root password>", new: e.m.RootPassword, why: "its password"},
		{section: secZero, old: "nixpushd init ", new: "nixpushd init --secret-key-file " + e.etc + "/secret-key --credentials-file " + e.etc + "/aws-credentials ",
			why: "as root, init writes /etc/nixpushd; here a temp dir (a later --credentials-file still wins)", oneWay: true},
		// Before the /etc/nixpushd rule, which then applies to it too.
		{section: secZero, old: "mc rm nixbuilder/", new: `MC_HOST_nixbuilder="http://$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' /etc/nixpushd/aws-credentials):$(sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' /etc/nixpushd/aws-credentials)@` + ep + `" mc rm nixbuilder/`,
			why: "the mc alias the comment in docs/setup.md describes: the writer's keys from the credentials file", oneWay: true},
		{section: secZero, old: "/etc/nixpushd", new: e.etc, why: "the files init writes, in a temp dir"},
		{section: secZero, old: "/tmp/init-readme/client", new: filepath.Join(e.work, "client"), why: "the client store"},
		{section: secZero, old: "/root/elsewhere", new: filepath.Join(e.work, "elsewhere"), why: "a directory without credentials"},
		{section: secZero, re: regexp.MustCompile(`/nix/store/[0-9a-z]{32}-hello-nixpushd`), new: helloPath, why: "the path hello.nix builds here"},
		{section: secZero, re: regexp.MustCompile(`trusted-public-keys builder1-nixpushd-1:[A-Za-z0-9+/]{43}=`),
			new: `trusted-public-keys "$(nix --extra-experimental-features nix-command key convert-secret-to-public < ` + e.etc + `/secret-key)"`,
			why: "the public key init printed in this run (from its key file)"},
		{section: secZero, old: "builder1-nixpushd-1", new: keyName(), why: "the key is named after this machine"},
	}
}

// ---------------------------------------------------------------- running

// script runs a snippet in bash -euo pipefail and returns stdout; stderr
// goes into the error.
func (e *readmeEnv) script(t *testing.T, text string, extraEnv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args := append(append([]string{}, e.runAs...), "bash", "-euo", "pipefail", "-c", text)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = e.work
	cmd.Env = append(append([]string{}, e.env...), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("documented snippet failed (%v):\n%s\nstdout:\n%s\nstderr:\n%s", err, text, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// bgDaemon is `make run` in a terminal: the foreground daemon, here in
// the background until the test stops it like Ctrl-C does.
type bgDaemon struct {
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{} // closed when the process has been waited for
	exitErr error
}

func (e *readmeEnv) startDaemon(t *testing.T, line string, extraEnv ...string) *bgDaemon {
	t.Helper()
	d := &bgDaemon{out: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command("bash", "-euo", "pipefail", "-c", line)
	d.cmd.Dir = e.work
	d.cmd.Env = append(append([]string{}, e.env...), extraEnv...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
		if t.Failed() {
			t.Logf("%s:\n%s", line, d.out.String())
		}
	})
	waitFor(t, 30*time.Second, "the daemon of "+line, func() bool {
		select {
		case <-d.exited:
			t.Fatalf("%s exited (%v):\n%s", line, d.exitErr, d.out.String())
		default:
		}
		return strings.Contains(d.out.String(), "nixpushd ready")
	})
	return d
}

// stop is Ctrl-C: SIGINT to make and the daemon.
func (d *bgDaemon) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("make run did not stop on Ctrl-C")
	}
	if !strings.Contains(d.out.String(), "stopping: no new work") {
		t.Errorf("the daemon did not stop cleanly:\n%s", d.out.String())
	}
}

// runShell runs an sh block: each `make run` line starts a daemon in the
// background, the other lines run as one script between them.
func (e *readmeEnv) runShell(t *testing.T, text string, extraEnv ...string) (stdout string, daemons []*bgDaemon) {
	t.Helper()
	var pending strings.Builder
	flush := func() {
		if strings.TrimSpace(pending.String()) != "" {
			stdout += e.script(t, pending.String(), extraEnv...)
		}
		pending.Reset()
	}
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(line, "make ") && strings.Contains(line, " run") {
			flush()
			daemons = append(daemons, e.startDaemon(t, line, extraEnv...))
			continue
		}
		pending.WriteString(line)
	}
	flush()
	return stdout, daemons
}

// --------------------------------------------------------------- the seeds

// seedPolicy is nix-cache-write.json as the seed guides write it:
// policy.Writer, which its tests hold to the seeds' text,
// and which is checked here against the guides when they are there.
var seedPolicy = string(policy.Writer("nix-cache", "nixbuilder"))

func jsonValue(t *testing.T, what, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", what, err, s)
	}
	return v
}

// seedPolicies returns the nix-cache-write.json of each seed guide found
// beside the repository.
func seedPolicies(t *testing.T) map[string]string {
	files, _ := filepath.Glob("../../../shared/seeds/*.txt")
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		i := strings.Index(s, "nix-cache-write.json")
		if i < 0 {
			continue
		}
		start := strings.Index(s[i:], "{")
		if start < 0 {
			continue
		}
		// The object ends at the brace that balances the first.
		depth := 0
		for j := i + start; j < len(s); j++ {
			switch s[j] {
			case '{':
				depth++
			case '}':
				depth--
			}
			if depth == 0 {
				out[filepath.Base(f)] = s[i+start : j+1]
				break
			}
		}
	}
	return out
}

// ------------------------------------------------------------------ tests

// The writer policy shown is the seed guides' nix-cache-write.json, and
// the Pushing-by-hand flow runs as written: mc sets the bucket up, the
// key is generated, the profile is written, push uploads a closure, and
// real Nix substitutes it with the public key the snippet printed.
func TestReadmePushByHand(t *testing.T) {
	blocks := readmeSection(t, secPush)
	e := newReadmeEnv(t)
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	result := filepath.Join(e.work, "result")
	if err := os.Symlink(cl.Top, result); err != nil {
		t.Fatal(err)
	}
	e.readmeSubsts(result, "")

	policies := ofKind(blocks, "json")
	if len(policies) != 1 {
		t.Fatalf("%d json blocks in %s, want the writer policy alone", len(policies), secPush)
	}
	readmePolicy := policies[0].text
	if got, want := jsonValue(t, "the writer policy of "+secPush.file, readmePolicy), jsonValue(t, "seedPolicy", seedPolicy); !reflect.DeepEqual(got, want) {
		t.Errorf("the nix-cache-write.json of %s differs from the seed guides':\n%s\nwant:\n%s", secPush.file, readmePolicy, seedPolicy)
	}
	seeds := seedPolicies(t)
	if len(seeds) == 0 {
		t.Log("no seed guides beside the repository; compared with seedPolicy only")
	}
	for name, p := range seeds {
		if !reflect.DeepEqual(jsonValue(t, name, p), jsonValue(t, "seedPolicy", seedPolicy)) {
			t.Errorf("seedPolicy differs from the policy of the seed guide %s:\n%s", name, p)
		}
	}
	// The snippet's `mc admin policy create … nix-cache-write.json` reads it.
	os.WriteFile(filepath.Join(e.work, "nix-cache-write.json"), []byte(readmePolicy), 0o644)

	if n := len(ofKind(blocks, "ini")); n != 1 {
		t.Fatalf("%d ini blocks, want the nixbuilder profile", n)
	}
	sh := ofKind(blocks, "sh")
	if len(sh) != 3 {
		t.Fatalf("%d sh blocks in %s, want 3 (mc, key, push); update this test with %s", len(sh), secPush, secPush.file)
	}
	var public string
	for i, b := range blocks {
		text := e.apply(secPush, b.text)
		switch b.info {
		case "ini":
			// "The guides' profile, in ~/.aws/credentials".
			os.MkdirAll(filepath.Join(e.home, ".aws"), 0o700)
			os.WriteFile(filepath.Join(e.home, ".aws", "credentials"), []byte(text), 0o600)
		case "sh":
			out, _ := e.runShell(t, text)
			t.Logf("block %d:\n%s%s", i, text, out)
			if m := regexp.MustCompile(`(?m)^(\S+-1:[A-Za-z0-9+/]{43}=)$`).FindStringSubmatch(out); m != nil {
				public = m[1]
			}
		}
	}
	e.checkSubsts(t, secPush)

	// The key snippet printed the public key, named as the page shows it.
	// The page's builder1 is this machine: the snippet names the key
	// after the host it runs on ($(hostname)).
	shown := regexp.MustCompile(`# (builder1-nixpushd-1):`).FindStringSubmatch(sh[1].text)
	if public == "" || shown == nil || !strings.HasPrefix(public, keyName()+":") {
		t.Fatalf("the key snippet printed %q; %s shows a key named %v", public, secPush.file, shown)
	}
	if st, err := os.Stat(filepath.Join(e.etc, "secret-key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the secret key: %v, mode %v, want 0600", err, st.Mode().Perm())
	}

	// The closure is in the bucket, and Nix substitutes it over anonymous
	// http with the printed key and signature checks on.
	for _, p := range cl.All {
		if !e.m.Has(t, "nix-cache", narinfoKey(t, p)) {
			t.Errorf("%s is not in the bucket", p)
		}
	}
	if !e.m.Has(t, "nix-cache", "nix-cache-info") {
		t.Error("push did not write nix-cache-info")
	}
	if out, err := testenv.CopyFrom(t, e.m.URL+"/nix-cache", []string{public}, cl.Top); err != nil {
		t.Errorf("Nix does not substitute the pushed closure with the printed key: %v\n%s", err, out)
	}
	// And the writer cannot delete (no s3:DeleteObject).
	rm := exec.Command(filepath.Join(e.binDir, "mc"), "rm", "nb/nix-cache/nix-cache-info")
	rm.Env = append(append([]string{}, e.env...), "MC_HOST_nb=http://nixbuilder:"+e.password+"@"+e.m.Endpoint)
	if out, err := rm.CombinedOutput(); err == nil || !strings.Contains(string(out), "Access Denied") {
		t.Errorf("the writer deleted an object (policy too wide): %v\n%s", err, out)
	}
}

// The Quick start as written: `make run` as root with a fresh state
// directory signs what is built with a key it creates and prints; the
// printed nix copy fetches it with signature checks on; the second `make
// run`, with an S3 URL in ARGS, gets the URL whole and pushes there.
func TestReadmeQuickStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the Quick start runs as root (sudo make run), and its copy as another user")
	}
	blocks := readmeSection(t, secQuick)
	e := newReadmeEnv(t)
	hello := filepath.Join(e.work, "hello-path")
	os.WriteFile(hello, nil, 0o644)
	// The path is known only after the daemon starts; the snippet reads
	// it from a file.
	e.readmeSubsts("", `"$(cat `+hello+`)"`)

	sh := ofKind(blocks, "sh")
	logs := ofKind(blocks, "")
	if len(sh) != 3 || len(logs) != 1 {
		t.Fatalf("%s: %d sh blocks and %d plain blocks, want 3 (run, copy, run with ARGS) and 1 (the key line); update this test with %s", secQuick, len(sh), len(logs), secQuick.file)
	}

	// 1. make run.
	_, ds := e.runShell(t, e.apply(secQuick, sh[0].text))
	if len(ds) != 1 {
		t.Fatalf("the first snippet started %d daemons, want 1", len(ds))
	}
	d := ds[0]
	// 2. It says it created a key, as the README shows.
	m := regexp.MustCompile(`msg="([^"]*trusted-public-keys = )\S+-1:`).FindStringSubmatch(logs[0].text)
	if m == nil {
		t.Fatalf("the key line of %s has changed shape:\n%s", secQuick, logs[0].text)
	}
	pk := regexp.MustCompile(regexp.QuoteMeta(`msg="`+m[1]) + `(\S+-nixpushd-1:[A-Za-z0-9+/]{43}=)"`).FindStringSubmatch(d.out.String())
	if pk == nil {
		t.Fatalf("the daemon did not print %q and its key:\n%s", m[1], d.out.String())
	}
	if b, _ := os.ReadFile(filepath.Join(e.state, "public-key")); strings.TrimSpace(string(b)) != pk[1] {
		t.Errorf("%s/public-key = %q, want the printed %q", e.state, b, pk[1])
	}

	// 3. A build while it runs lands in the default cache.
	cl := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	os.WriteFile(hello, []byte(cl.Top), 0o644)
	waitFor(t, 60*time.Second, "the build in the default cache", func() bool {
		_, err := os.Stat(filepath.Join(e.state, "cache", narinfoKey(t, cl.Top)))
		return err == nil
	})
	if st, err := os.Stat(filepath.Join(e.state, "secret-key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the key the daemon created: %v, mode %v, want 0600 as the README says", err, st.Mode().Perm())
	}
	// 4. "Any user can then copy from it with signature checks on": the
	// copy as nobody, into a fresh client store of nobody's so that it
	// really fetches (the machine's store has the path already).
	nobody := filepath.Join(e.work, "nobody")
	os.MkdirAll(filepath.Join(nobody, "store"), 0o755)
	os.Chown(nobody, 65534, 65534)
	os.Chown(filepath.Join(nobody, "store"), 65534, 65534)
	e.runAs = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	e.runShell(t, e.apply(secQuick, sh[1].text), "HOME="+nobody, "XDG_CACHE_HOME="+nobody+"/cache",
		"NIX_CONFIG=substituters =\nstore = "+nobody+"/store\nrequire-sigs = true")
	e.runAs = nil
	if st, err := os.Lstat(filepath.Join(nobody, "store", cl.Top)); err != nil || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("the snippet's nix copy, as nobody, did not fetch %s into nobody's client store: %v", cl.Top, err)
	}
	d.stop(t)

	// 5. make run ARGS="--to s3://…&scheme=http --secret-key-file …": the
	// daemon gets the whole URL and pushes a new build into the bucket.
	os.MkdirAll(e.etc, 0o700)
	key, _ := testenv.GenerateKey(t, e.etc, "quickstart-1")
	os.Rename(key, filepath.Join(e.etc, "secret-key"))
	// The writer's keys in the file init writes; none in the environment,
	// as under sudo.
	os.WriteFile(filepath.Join(e.etc, "aws-credentials"), []byte("AWS_ACCESS_KEY_ID="+e.m.RootUser+"\nAWS_SECRET_ACCESS_KEY="+e.m.RootPassword+"\n"), 0o600)
	e.m.MC(t, "mb", testenv.MCAlias+"/nix-cache")
	_, ds = e.runShell(t, e.apply(secQuick, sh[2].text))
	if len(ds) != 1 {
		t.Fatalf("the third snippet started %d daemons, want 1", len(ds))
	}
	cl2 := testenv.BuildClosure(t, testenv.ClosureOpts{BigFileMB: -1})
	waitFor(t, 60*time.Second, "the build in the bucket", func() bool {
		return e.m.Has(t, "nix-cache", narinfoKey(t, cl2.Top))
	})
	if !strings.Contains(ds[0].out.String(), "&scheme=http") {
		t.Errorf("the daemon's log does not show the whole URL:\n%s", ds[0].out.String())
	}
	ds[0].stop(t)
	e.checkSubsts(t, secQuick)
}

// flagsOf lists the flags `nixpushd CMD -h` prints (cached per command).
func flagsOf(t *testing.T, cache map[string]map[string]bool, cmd string) map[string]bool {
	t.Helper()
	if f, ok := cache[cmd]; ok {
		return f
	}
	stdout, stderr, code := runBin(t, nil, cmd, "-h")
	if code != 0 || !strings.HasPrefix(stdout, "usage:") {
		t.Fatalf("nixpushd %s -h: exit %d, no usage line\n%s%s", cmd, code, stdout, stderr)
	}
	f := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(stdout, -1) {
		f[m[1]] = true
	}
	cache[cmd] = f
	return f
}

// checkNixpushdFlags checks that a command line of file calling nixpushd
// uses only flags its -h lists; it returns whether the line calls nixpushd.
func checkNixpushdFlags(t *testing.T, cache map[string]map[string]bool, file, line string) bool {
	t.Helper()
	w := shellWords(line)
	for len(w) > 0 && (regexp.MustCompile(`^[A-Z_]+=`).MatchString(w[0]) || w[0] == "sudo" || w[0] == "export") {
		w = w[1:]
	}
	if len(w) < 2 || w[0] != "nixpushd" {
		return false
	}
	flags := flagsOf(t, cache, w[1])
	for _, a := range w[2:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
		if !flags[name] {
			t.Errorf("%s: `%s` uses --%s, which `nixpushd %s -h` does not list", file, line, name, w[1])
		}
	}
	return true
}

// Noise that differs from run to run, masked alike in the pages and in
// the real output.
var volatile = []struct {
	re  *regexp.Regexp
	new string
}{
	{regexp.MustCompile(`time=\S+ `), ""},
	{regexp.MustCompile(`duration=\S+`), "duration=D"},
	{regexp.MustCompile(`(nar_size|file_size)=\d+`), "$1=N"},
	{regexp.MustCompile(`url=nar/\S+`), "url=nar/X"},
	{regexp.MustCompile(`/nix/store/[0-9a-z]{32}-`), "/nix/store/HASH-"},
	{regexp.MustCompile(`([A-Za-z0-9.-]+-\d+):[A-Za-z0-9+/]{43}=`), "$1:KEY"},
	{regexp.MustCompile(`; [\d.]+ \S+ NAR → .*$`), "; SIZES"},
}

func maskVolatile(s string) string {
	for _, v := range volatile {
		s = v.re.ReplaceAllString(s, v.new)
	}
	return strings.TrimRight(s, " ")
}

// Nix's build chatter on stderr, which the pages leave out.
var nixChatter = regexp.MustCompile(`^(these \d+ derivations will be built:|this derivation will be built:|  /nix/store/\S+\.drv|building '/nix/store/)`)

// From zero to a working cache: every nixpushd command shown uses flags
// the CLI has, and the whole console session, replayed against a fresh
// MinIO, prints what docs/setup.md shows (up to keys, hashes, timings, and
// the dates and sizes of ls).
func TestReadmeFromZero(t *testing.T) {
	blocks := readmeSection(t, secZero)
	steps := consoleSteps(ofKind(blocks, "console"))
	cache := map[string]map[string]bool{}
	n := 0
	for _, s := range steps {
		if checkNixpushdFlags(t, cache, secZero.file, s.cmd) {
			n++
		}
	}
	if n < 5 {
		t.Fatalf("only %d nixpushd commands in the console blocks of %s", n, secZero)
	}

	e := newReadmeEnv(t)
	// hello.nix is not shown: any one-file build that prints the line.
	hello := `derivation { name = "hello-nixpushd"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo hello from the cache > $out" ]; }`
	os.WriteFile(filepath.Join(e.work, "hello.nix"), []byte(hello), 0o644)
	helloPath := strings.TrimSpace(string(testenv.Nix(t, "nix-instantiate", "--eval", "-E", "(import "+filepath.Join(e.work, "hello.nix")+").outPath")))
	helloPath = strings.Trim(helloPath, `"`)
	e.readmeSubsts("", helloPath)

	// One bash session, as in docs/setup.md, each command's output after a
	// marker.
	const marker = "@@readme-step@@"
	var script strings.Builder
	script.WriteString("exec 2>&1\n")
	for _, s := range steps {
		cmd := e.apply(secZero, s.cmd)
		fmt.Fprintf(&script, "echo %s\n%s\n", marker, cmd)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = e.work
	cmd.Env = e.env
	out, _ := cmd.CombinedOutput()
	parts := strings.Split(string(out), marker+"\n")[1:]
	if len(parts) != len(steps) {
		t.Fatalf("the session printed %d markers for %d commands:\n%s", len(parts), len(steps), out)
	}
	for i, s := range steps {
		var got []string
		sc := bufio.NewScanner(strings.NewReader(e.unapply(secZero, parts[i])))
		for sc.Scan() {
			if nixChatter.MatchString(sc.Text()) {
				continue
			}
			got = append(got, sc.Text())
		}
		want := s.output
		if strings.HasPrefix(s.cmd, "ls -l") {
			// Compare modes and names only.
			got, want = lsModes(got), lsModes(want)
		}
		for j := range got {
			got[j] = maskVolatile(got[j])
		}
		want = append([]string{}, want...)
		for j := range want {
			want[j] = maskVolatile(want[j])
		}
		for len(got) > 0 && got[len(got)-1] == "" {
			got = got[:len(got)-1]
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("documentation drift: `%s` prints\n%s\n%s shows\n%s", s.cmd, strings.Join(got, "\n"), secZero, strings.Join(want, "\n"))
		}
	}
	// After the outputs were mapped back: some rules apply to them only.
	e.checkSubsts(t, secZero)
}

// lsModes keeps the mode and name of each entry of `ls -l` output.
func lsModes(lines []string) []string {
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 9 && f[len(f)-1] != ".." {
			out = append(out, f[0]+" "+f[len(f)-1])
		}
	}
	return out
}

// Every nixpushd command line anywhere in the code blocks of README.md and
// docs/*.md (commands, prompts, and the commands init prints) uses only
// flags that `nixpushd CMD -h` lists.
func TestReadmeNixpushdFlags(t *testing.T) {
	files := docFiles(t)
	if len(files) < 2 {
		t.Fatal("no docs/*.md beside README.md")
	}
	top, _, _ := runBin(t, nil, "-h")
	commands := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(top, -1) {
		commands[m[1]] = true
	}
	if !commands["push"] || !commands["init"] {
		t.Fatalf("nixpushd -h lists no push or init command:\n%s", top)
	}
	cache := map[string]map[string]bool{}
	n := 0
	perFile := map[string]int{}
	for _, file := range files {
		b, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Fatal(err)
		}
		fenced := false
		var logical string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				fenced = !fenced
				continue
			}
			if !fenced {
				continue
			}
			// Continuation lines make one command.
			if strings.HasSuffix(line, `\`) {
				logical += strings.TrimSuffix(line, `\`) + " "
				continue
			}
			l := strings.TrimSpace(logical + line)
			logical = ""
			l = strings.TrimPrefix(strings.TrimPrefix(l, "# "), "$ ")
			w := shellWords(l)
			for len(w) > 0 && (regexp.MustCompile(`^[A-Z_]+=`).MatchString(w[0]) || w[0] == "sudo") {
				w = w[1:]
			}
			if len(w) < 2 || w[0] != "nixpushd" || !commands[w[1]] {
				continue
			}
			if checkNixpushdFlags(t, cache, file, l) {
				n++
				perFile[file]++
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d nixpushd command lines found in the code blocks of %v", n, files)
	}
	t.Logf("%d nixpushd command lines checked: %v", n, perFile)
}

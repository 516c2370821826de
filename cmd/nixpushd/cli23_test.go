package main

import (
	"bufio"
	"flag"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// #23: flags before, between and after the arguments; "--" ends them.
func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		to       string
		quiet    bool
		wantArgs []string
	}{
		{[]string{"--to", "u", "a", "b"}, "u", false, []string{"a", "b"}},
		{[]string{"a", "--to", "u", "b"}, "u", false, []string{"a", "b"}},
		{[]string{"a", "b", "--to", "u", "--quiet"}, "u", true, []string{"a", "b"}},
		{[]string{"NAME", "./result", "--to=u"}, "u", false, []string{"NAME", "./result"}},
		{[]string{"a", "--", "--to", "u"}, "", false, []string{"a", "--to", "u"}},
		{[]string{"--quiet", "--", "-x"}, "", true, []string{"-x"}},
		{[]string{"-", "--quiet"}, "", true, []string{"-"}},
		{nil, "", false, nil},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		to := fs.String("to", "", "")
		quiet := fs.Bool("quiet", false, "")
		if err := parseFlags(fs, tc.args); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if *to != tc.to || *quiet != tc.quiet || !slices.Equal(fs.Args(), tc.wantArgs) && len(fs.Args())+len(tc.wantArgs) > 0 {
			t.Errorf("%q: --to %q --quiet %v args %q, want %q %v %q", tc.args, *to, *quiet, fs.Args(), tc.to, tc.quiet, tc.wantArgs)
		}
	}
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.String("to", "", "")
	if err := parseFlags(fs, []string{"a", "--bogus"}); err == nil {
		t.Error("an unknown flag after an argument was accepted")
	}
}

// #23: the commands take flags after their arguments, as docs/ write them.
func TestCLIFlagsAfterArguments(t *testing.T) {
	dir := t.TempDir()
	// A non-store path is refused for what it is, not as "lstat --to".
	_, stderr, code := runBin(t, nil, "push", dir, "--to", "file://"+dir+"/cache")
	if code == 0 || !strings.Contains(stderr, dir) || strings.Contains(stderr, "lstat --to") {
		t.Errorf("push PATH --to: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runBin(t, nil, "pin", "rm", "nosuchpin", "--to", "file://"+dir+"/cache")
	if code != 1 || !strings.Contains(stderr, `pin "nosuchpin" does not exist`) {
		t.Errorf("pin rm NAME --to: exit %d, stderr %q", code, stderr)
	}
}

// #23: a daemon that answers ERR refused the paths; it is not "not
// reachable". The paths are spooled either way, and counted in words.
func TestHookSaysRefusedNotUnreachable(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "ERR enqueue: no space left on device\n")
			c.Close()
		}
	}()
	path := "/nix/store/" + strings.Repeat("a", 32) + "-x"
	env := []string{"NIXPUSHD_SOCKET=" + socket, "NIXPUSHD_SPOOL_DIR=" + filepath.Join(dir, "spool"), "OUT_PATHS=" + path}
	_, stderr, code := runBin(t, env, "hook")
	if code != 0 || !strings.Contains(stderr, "refused the paths (enqueue: no space left on device); saved 1 path in") || strings.Contains(stderr, "not reachable") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	ln.Close()
	_, stderr, _ = runBin(t, env, "hook")
	if !strings.Contains(stderr, "daemon not reachable at "+socket+"; saved 1 path in") {
		t.Errorf("no daemon: stderr %q", stderr)
	}
}

// #23: --check-config reports every problem, flags' and files' alike,
// then how many; without it the daemon stops at the first.
func TestCheckConfigReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	args := []string{"daemon", "--check-config", "--jobs", "0", "--max-active", "0", "--include", "(",
		"--secret-key-file", filepath.Join(dir, "missing-key"), "--state-dir", dir, "--socket", filepath.Join(dir, "s")}
	stdout, stderr, code := runBin(t, nil, args...)
	for _, want := range []string{"config: --jobs 0: must be at least 1", "config: --max-active 0", `config: --include "("`, "missing-key", "--check-config: 4 problems found"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if code != 2 || !strings.HasPrefix(stdout, "{") {
		t.Errorf("exit %d, stdout %q: want 2 (bad flags) and the configuration as JSON", code, stdout)
	}
	_, stderr, code = runBin(t, nil, "daemon", "--jobs", "0", "--max-active", "0", "--state-dir", dir)
	if code != 2 || strings.Count(stderr, "must be at least 1") != 1 {
		t.Errorf("without --check-config: exit %d, stderr %q; want the first problem only, exit 2", code, stderr)
	}
}

package main

import (
	"flag"
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

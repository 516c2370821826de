package testenv_test

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// CI is parsed one way everywhere: strconv.ParseBool's true values.
func TestCIParsing(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ci bool
	}{
		{"", false}, {"true", true}, {"1", true}, {"TRUE", true}, {"t", true},
		{"false", false}, {"0", false}, {"yes", false}, {"garbage", false},
	} {
		t.Setenv("CI", tc.v)
		if got := testenv.CI(); got != tc.ci {
			t.Errorf("CI=%q: CI() = %v, want %v", tc.v, got, tc.ci)
		}
	}
}

// Require and Unavailable skip outside CI, fail under CI, and a broken
// (rather than absent) tool always fails.
func TestRequireRule(t *testing.T) {
	notFound := &exec.Error{Name: "systemd-analyze", Err: exec.ErrNotFound}
	broken := errors.New("exit status 139")
	for _, tc := range []struct {
		ci         string
		err        error
		skip, fail bool
	}{
		{ci: "", err: nil},
		{ci: "1", err: nil},
		{ci: "", err: notFound, skip: true},
		{ci: "false", err: fmt.Errorf("x: %w", testenv.ErrNotInstalled), skip: true},
		{ci: "1", err: notFound, fail: true},
		{ci: "true", err: notFound, fail: true},
		{ci: "", err: broken, fail: true},
	} {
		t.Setenv("CI", tc.ci)
		r := &recordTB{TB: t}
		testenv.Require(r, "systemd-analyze", tc.err)
		if r.skipped != tc.skip || r.failed != tc.fail {
			t.Errorf("CI=%q err=%v: skipped %v failed %v (%s)", tc.ci, tc.err, r.skipped, r.failed, r.msg)
		}
	}

	t.Setenv("PATH", t.TempDir())
	for ci, wantFail := range map[string]bool{"": false, "1": true} {
		t.Setenv("CI", ci)
		r := &recordTB{TB: t}
		if p := testenv.LookPath(r, "xz", "apt-get install xz-utils"); p != "" {
			t.Errorf("LookPath with an empty PATH = %q", p)
		}
		if r.failed != wantFail || r.skipped == wantFail {
			t.Errorf("CI=%q LookPath: skipped %v failed %v (%s)", ci, r.skipped, r.failed, r.msg)
		}
	}
}

package nar

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// requireNix skips the test when the Nix tools are missing, unless CI=true,
// where a missing Nix must not let the cross-checks pass silently.
func requireNix(t testing.TB) {
	t.Helper()
	for _, c := range []string{"nix", "nix-store", "nix-build", "nix-hash"} {
		if _, err := exec.LookPath(c); err != nil {
			testenv.Unavailable(t, "%s not found: Nix is required for this test", c)
		}
	}
}

// nixOptions are needed to run Nix as root without nixbld users.
func nixOptions() []string {
	opts := []string{"--option", "sandbox", "false"}
	if os.Geteuid() == 0 {
		opts = append(opts, "--option", "build-users-group", "")
	}
	return opts
}

// runCmd runs a command and returns its stdout, failing the test on error.
func runCmd(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// nixCmd runs a `nix` subcommand with nix-command enabled.
func nixCmd(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	full := append([]string{"--extra-experimental-features", "nix-command"}, nixOptions()...)
	return runCmd(t, stdin, "nix", append(full, args...)...)
}

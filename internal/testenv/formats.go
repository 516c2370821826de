package testenv

import (
	"strings"
	"testing"
)

// formatsExpr builds, with host tools only, a path with every node kind a
// NAR listing describes (nested and empty directories, symlinks, an
// executable, an empty file) and a debug file under
// lib/debug/.build-id/ab/, and prints FormatsLogLine to its build log.
// The nonce makes each call a new derivation.
const formatsExpr = `{ nonce }: derivation {
  name = "formats-probe";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  inherit nonce;
  args = ["-c" ''
    /bin/mkdir -p $out/a/b/c $out/bin $out/emptydir $out/lib/debug/.build-id/ab $out/lib/debug/.build-id/zz
    echo hello > $out/a/b/c/deep.txt
    printf '#!/bin/sh\necho hi\n' > $out/bin/run; /bin/chmod +x $out/bin/run
    : > $out/empty
    : > $out/bin/empty-exec; /bin/chmod +x $out/bin/empty-exec
    /bin/ln -s a/b/c/deep.txt $out/link
    /bin/ln -s /nowhere $out/a/dangling
    echo debugdata > $out/lib/debug/.build-id/ab/${FormatsBuildID}.debug
    echo not-hex > $out/lib/debug/.build-id/zz/${FormatsBuildID}.debug
    echo "${FormatsLogLine} $nonce"
  ''];
}
`

// FormatsBuildID is the build ID (after the "ab/" directory) of the debug
// file in BuildFormatsPath's output.
const FormatsBuildID = "cdef0123456789abcdef0123456789abcdef01"

// FormatsLogLine starts the line BuildFormatsPath's builder prints.
const FormatsLogLine = "formats-probe build log"

// BuildFormatsPath builds a fresh formats-probe path (see formatsExpr)
// and returns its out path and derivation.
func BuildFormatsPath(t testing.TB, nonce string) (out, drv string) {
	t.Helper()
	out = BuildExpr(t, fmtExpr(), "--argstr", "nonce", nonce)[0]
	drv = storePaths(Nix(t, "nix-store", "--query", "--deriver", out))[0]
	return out, drv
}

func fmtExpr() string {
	return strings.NewReplacer("${FormatsBuildID}", FormatsBuildID, "${FormatsLogLine}", FormatsLogLine).Replace(formatsExpr)
}

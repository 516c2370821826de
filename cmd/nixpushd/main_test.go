package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// srv is the MinIO server shared by this package's integration tests (nil
// when MinIO is not installed and CI is not set).
var srv *testenv.MinIO

// bin is the nixpushd binary under test, built once: the tests run it as
// a user would, as a separate process with its own environment.
// NIXPUSHD_TEST_BIN=FILE runs them (the benchmarks, in practice) against
// a binary built elsewhere, such as an older commit's for before/after
// figures (.ci/bench-compare).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nixpushd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "nixpushd")
	if b := os.Getenv("NIXPUSHD_TEST_BIN"); b != "" {
		bin = b
	} else if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build nixpushd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testenv.RunWithMinIO(m, &srv)
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireMinIO(t testing.TB) *testenv.MinIO {
	t.Helper()
	testenv.RequireMinIO(t)
	if srv == nil {
		t.Fatal("MinIO is installed but did not start (see TestMain output)")
	}
	return srv
}

// nixpushd runs the binary with env added to a clean environment, returning
// stdout+stderr and the error.
func nixpushd(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// cleanEnv drops credentials the developer may have set, so tests only see
// the ones they pass.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "AWS_") || strings.HasPrefix(e, "NOTIFY_SOCKET=") || strings.HasPrefix(e, "LISTEN_") {
			continue
		}
		env = append(env, e)
	}
	return append(env, "HOME="+os.TempDir()+"/nixpushd-test-home-nonexistent")
}

func writerEnv(c *testenv.Cache) []string {
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.SecretKey}
}

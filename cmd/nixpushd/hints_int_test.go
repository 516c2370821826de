package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The writer's keys given to init as the admin's: the line says so and
// asks for the admin's keys, instead of suggesting the same user name.
func TestInitWriterKeysAsAdmin(t *testing.T) {
	_, key, creds := initFiles(t)
	out, err := nixpushd(t, []string{"AWS_ACCESS_KEY_ID=nixbuilder", "AWS_SECRET_ACCESS_KEY=writer-secret"},
		"init", "--to", "s3://nix-cache?endpoint=127.0.0.1:1&scheme=http", "--secret-key-file", key, "--credentials-file", creds)
	want := "nixpushd: init: the admin credentials (nixbuilder, from AWS_ACCESS_KEY_ID) are the writer's keys, not an admin's: give init the admin's keys (on MinIO, the root user"
	if initExitCode(err) != 1 || !strings.Contains(out, want) {
		t.Errorf("exit %d, want 1 and %q:\n%s", initExitCode(err), want, out)
	}
	if strings.Contains(out, "e.g. nixbuilder") || strings.Contains(out, "writer-secret") {
		t.Errorf("the line suggests the writer's own name, or shows the secret:\n%s", out)
	}
}

// A user's push without HOME: no --to was given, and the line says that
// the default cache's state directory cannot be found, not that a --to
// "file://.local/…" is wrong.
func TestPushWithoutHome(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the binary as another user")
	}
	// A copy of the binary that user nobody may run.
	dir, err := os.MkdirTemp("", "nixpushd-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	nobodyBin := filepath.Join(dir, "nixpushd")
	if err := os.WriteFile(nobodyBin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nobodyBin, "push", "/nix/store/00000000000000000000000000000000-x")
	cmd.Dir = dir
	for _, e := range cleanEnv() {
		if !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "XDG_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	want := "nixpushd: no --to given, and the default cache is in the state directory ~/.local/state/nixpushd, which cannot be found because HOME is not set: set HOME (or XDG_STATE_HOME), or give --to\n"
	if initExitCode(err) != 1 || out.String() != want {
		t.Errorf("exit %d, output %q; want exit 1 and %q", initExitCode(err), out.String(), want)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// #23: `make install DESTDIR=… PREFIX=/usr` stages the binary, the hook
// link and the units, with the units' paths following PREFIX. It runs the
// repository's Makefile on a copy of the units, with the test binary as
// the one `build` would make (make -o build).
func TestMakeInstall(t *testing.T) {
	testenv.LookPath(t, "make", "apt-get install make")
	src := t.TempDir()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "nixpushd"), b, 0o755)
	os.MkdirAll(filepath.Join(src, "nixos-module"), 0o755)
	for _, f := range []string{"Makefile", "nixos-module/nixpushd.service", "nixos-module/nixpushd.socket"} {
		data, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(src, f), data, 0o644)
	}
	install := func(t *testing.T, args ...string) string {
		t.Helper()
		dest := t.TempDir()
		cmd := exec.Command("make", append([]string{"-C", src, "--no-print-directory", "-o", "build", "install", "DESTDIR=" + dest}, args...)...)
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return dest
	}

	t.Run("PREFIX=/usr", func(t *testing.T) {
		dest := install(t, "PREFIX=/usr")
		var tree []string
		filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				tree = append(tree, strings.TrimPrefix(p, dest)+" "+fi.Mode().String())
			}
			return nil
		})
		want := []string{
			"/usr/bin/nixpushd -rwxr-xr-x",
			"/usr/bin/nixpushd-hook Lrwxrwxrwx",
			"/usr/lib/systemd/system/nixpushd.service -rw-r--r--",
			"/usr/lib/systemd/system/nixpushd.socket -rw-r--r--",
		}
		if strings.Join(tree, "\n") != strings.Join(want, "\n") {
			t.Errorf("installed tree:\n%s\nwant:\n%s", strings.Join(tree, "\n"), strings.Join(want, "\n"))
		}
		// Relative, so that the staged tree works where it lands.
		if l, err := os.Readlink(filepath.Join(dest, "usr/bin/nixpushd-hook")); err != nil || l != "nixpushd" {
			t.Errorf("nixpushd-hook -> %q (%v), want nixpushd", l, err)
		}
		unit := readString(t, filepath.Join(dest, "usr/lib/systemd/system/nixpushd.service"))
		if m := regexp.MustCompile(`(?m)^ExecStart=(\S+) daemon \\$`).FindStringSubmatch(unit); m == nil || m[1] != "/usr/bin/nixpushd" {
			t.Errorf("ExecStart of the installed unit: %v, want /usr/bin/nixpushd daemon", m)
		}
		if strings.Contains(unit, "/usr/local/bin/nixpushd") {
			t.Errorf("the installed unit still names /usr/local/bin/nixpushd")
		}
		if !strings.Contains(unit, "--to=s3://nix-cache?endpoint=s3.example.org \\\n") {
			t.Errorf("without TO, the unit's example --to is gone")
		}
		out, err := exec.Command(filepath.Join(dest, "usr/bin/nixpushd"), "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "nixpushd ") {
			t.Errorf("installed nixpushd version: %q %v", out, err)
		}
		out, err = exec.Command(filepath.Join(dest, "usr/bin/nixpushd"), "--help").Output()
		if err != nil || !strings.Contains(string(out), "install-hook") {
			t.Errorf("installed nixpushd --help: %v\n%s", err, out)
		}
		// Called through the link, it is the hook (which Nix calls with
		// OUT_PATHS set).
		_, errOut, _ := runBinAt(t, filepath.Join(dest, "usr/bin/nixpushd-hook"))
		if !strings.Contains(errOut, "OUT_PATHS is not set") {
			t.Errorf("nixpushd-hook did not run as the hook: %s", errOut)
		}
	})

	t.Run("default PREFIX, a TO with query", func(t *testing.T) {
		const to = "s3://nix-cache?endpoint=127.0.0.1:9000&scheme=http"
		dest := install(t, "TO="+to)
		unit := readString(t, filepath.Join(dest, "usr/local/lib/systemd/system/nixpushd.service"))
		if !strings.Contains(unit, "\nExecStart=/usr/local/bin/nixpushd daemon \\\n    --to="+to+" \\\n") {
			t.Errorf("the installed unit's ExecStart:\n%s", unit)
		}
		if _, err := os.Lstat(filepath.Join(dest, "usr/local/bin/nixpushd-hook")); err != nil {
			t.Error(err)
		}
	})
}

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// #23: what install-hook does to a nix.conf's text.
func TestSetPostBuildHook(t *testing.T) {
	const hook = "/usr/local/bin/nixpushd-hook"
	const added = "# nixpushd: hand every build to the daemon (nixpushd install-hook)\npost-build-hook = " + hook + "\n"
	for _, tc := range []struct {
		name, conf string
		force      bool
		want       string // the new text; "" when nothing is written
		already    bool
		other      string
		line       int
	}{
		{name: "empty file", conf: "", want: added},
		{name: "no newline at the end", conf: "sandbox = false", want: "sandbox = false\n" + added},
		{name: "comments and includes kept", conf: "# post-build-hook = /x\ninclude /etc/nix/a.conf\n!include b.conf\n\n  max-jobs = 4 # four\n",
			want: "# post-build-hook = /x\ninclude /etc/nix/a.conf\n!include b.conf\n\n  max-jobs = 4 # four\n" + added},
		{name: "already set", conf: "a = b\npost-build-hook = " + hook + "\n", already: true, line: 2},
		{name: "already set, other spacing and a comment", conf: "post-build-hook=" + hook + "   # ours\n", already: true, line: 1},
		{name: "another hook", conf: "post-build-hook = /etc/nix/upload.sh\nx = y\n", other: "/etc/nix/upload.sh", line: 1},
		{name: "another hook, forced", conf: "post-build-hook = /etc/nix/upload.sh\nx = y\n", force: true, want: "post-build-hook = " + hook + "\nx = y\n", line: 1},
		{name: "the last assignment counts", conf: "post-build-hook = " + hook + "\npost-build-hook = /other\n", other: "/other", line: 2},
		{name: "ours after another", conf: "post-build-hook = /other\npost-build-hook = " + hook + "\n", already: true, line: 2},
		{name: "an empty assignment sets no hook", conf: "post-build-hook =\nz = 1\n", want: "post-build-hook = " + hook + "\nz = 1\n", line: 1},
		{name: "a similar name is another setting", conf: "post-build-hook-x = /other\n", want: "post-build-hook-x = /other\n" + added},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setPostBuildHook([]byte(tc.conf), hook, tc.force)
			if e.already != tc.already || e.other != tc.other || tc.line != 0 && e.line != tc.line {
				t.Errorf("edit %+v, want already %v, other %q, line %d", e, tc.already, tc.other, tc.line)
			}
			if got := string(e.text); got != tc.want {
				t.Errorf("new text:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

// The edit touches no other line, and afterwards the hook is what Nix
// reads (the last assignment).
func FuzzSetPostBuildHook(f *testing.F) {
	f.Add("sandbox = false\n", false)
	f.Add("post-build-hook = /x # c\ninclude a\n", true)
	f.Add("post-build-hook =\n", false)
	f.Add("a=b\r\npost-build-hook\t=\t/y", true)
	const hook = "/usr/bin/nixpushd-hook"
	f.Fuzz(func(t *testing.T, conf string, force bool) {
		e := setPostBuildHook([]byte(conf), hook, force)
		if e.already || e.other != "" {
			if e.text != nil {
				t.Fatalf("nothing to write, but text %q", e.text)
			}
			return
		}
		var last string
		for _, l := range strings.SplitAfter(string(e.text), "\n") {
			if n, v, ok := confSetting(l); ok && n == "post-build-hook" {
				last = v
			}
		}
		if last != hook {
			t.Fatalf("after the edit post-build-hook is %q:\n%s", last, e.text)
		}
		// Every old line is still there, in order.
		rest := string(e.text)
		for _, l := range strings.SplitAfter(conf, "\n") {
			if n, _, ok := confSetting(l); ok && n == "post-build-hook" {
				continue
			}
			i := strings.Index(rest, strings.TrimSuffix(l, "\n"))
			if i < 0 {
				t.Fatalf("line %q lost:\n%q", l, e.text)
			}
			rest = rest[i+len(strings.TrimSuffix(l, "\n")):]
		}
	})
}

// hookDir is a bin directory as make install leaves it: a copy of the
// binary and the nixpushd-hook link.
func hookDir(t *testing.T) (nixpushd, hook string) {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	nixpushd, hook = filepath.Join(dir, "nixpushd"), filepath.Join(dir, "nixpushd-hook")
	if err := os.WriteFile(nixpushd, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nixpushd", hook); err != nil {
		t.Fatal(err)
	}
	return nixpushd, hook
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// #23: `nixpushd install-hook`, the real binary on temp nix.conf files.
func TestInstallHookCommand(t *testing.T) {
	nixpushd, hook := hookDir(t)
	line := "post-build-hook = " + hook
	dir := t.TempDir()
	conf := filepath.Join(dir, "nix.conf")
	const debian = "# Debian's nix.conf\nbuild-users-group = nixbld\ninclude /etc/nix/machines.conf\n!include /etc/nix/local.conf\n"
	if err := os.WriteFile(conf, []byte(debian), 0o640); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runBinAt(t, nixpushd, append([]string{"install-hook", "--nix-conf", conf}, args...)...)
	}

	t.Run("fresh: added after the lines kept as they were", func(t *testing.T) {
		out, errOut, code := run()
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		want := "Added " + line + " in " + conf + ".\nRestart the nix-daemon to use it: systemctl restart nix-daemon\n"
		if out != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
		}
		if got := readString(t, conf); !strings.HasPrefix(got, debian) || !strings.HasSuffix(got, "\n"+line+"\n") || strings.Count(got, "post-build-hook =") != 1 {
			t.Errorf("nix.conf after install-hook:\n%s", got)
		}
		if st, _ := os.Stat(conf); st.Mode().Perm() != 0o640 {
			t.Errorf("nix.conf mode %v, want the 0640 it had", st.Mode().Perm())
		}
	})

	t.Run("again: already set, the file untouched", func(t *testing.T) {
		before := readString(t, conf)
		out, _, code := run()
		if code != 0 || !strings.Contains(out, line+" is already set in "+conf) || strings.Contains(out, "Added") {
			t.Errorf("exit %d: %s", code, out)
		}
		if readString(t, conf) != before {
			t.Errorf("the second run changed nix.conf")
		}
	})

	t.Run("another hook is not replaced without --force", func(t *testing.T) {
		const other = "/etc/nix/upload-to-cache.sh"
		os.WriteFile(conf, []byte(debian+"post-build-hook = "+other+"\n"), 0o644)
		out, errOut, code := run()
		want := "nixpushd: install-hook: " + conf + " line 5 already sets post-build-hook = " + other + "; nothing changed (--force replaces it with " + hook + ")\n"
		if code != 1 || errOut != want || out != "" {
			t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
		}
		if got := readString(t, conf); strings.Contains(got, hook) {
			t.Errorf("nix.conf changed:\n%s", got)
		}
		out, _, code = run("--force")
		if code != 0 || !strings.Contains(out, "Replaced post-build-hook = "+other+" with "+line) {
			t.Errorf("--force: exit %d: %s", code, out)
		}
		if got := readString(t, conf); got != debian+line+"\n" {
			t.Errorf("nix.conf after --force:\n%s", got)
		}
	})

	t.Run("read-only: the line to add, one error line, exit 1", func(t *testing.T) {
		ro := filepath.Join(t.TempDir(), "nix.conf")
		os.WriteFile(ro, []byte(debian), 0o444)
		out, errOut, code := runBinAt(t, nixpushd, "install-hook", "--nix-conf", ro)
		if code != 1 || !strings.Contains(out, "\n\n"+line+"\n\n") || !strings.Contains(out, "Add this line to "+ro) {
			t.Errorf("exit %d, stdout:\n%s", code, out)
		}
		if !strings.HasPrefix(errOut, "nixpushd: install-hook: cannot write "+ro+": permission denied") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("stderr: %q, want one line naming %s", errOut, ro)
		}
		if readString(t, ro) != debian {
			t.Errorf("the read-only nix.conf changed")
		}
	})

	t.Run("not root: /etc/nix is not writable", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root, to run the binary as nobody")
		}
		testenv.LookPath(t, "setpriv", "install util-linux")
		// A root-owned 0755 directory and 0644 file, as /etc/nix; a copy of
		// the binary nobody can run.
		d := t.TempDir()
		os.Chmod(d, 0o755)
		os.Chmod(filepath.Dir(d), 0o755)
		os.Chmod(filepath.Dir(nixpushd), 0o755)
		os.Chmod(filepath.Dir(filepath.Dir(nixpushd)), 0o755)
		etc := filepath.Join(d, "nix.conf")
		os.WriteFile(etc, []byte(debian), 0o644)
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", nixpushd, "install-hook", "--nix-conf", etc)
		cmd.Env = cleanEnv()
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("as nobody: %v, want exit 1\n%s%s", err, o.String(), e.String())
		}
		if !strings.Contains(o.String(), "\n\n"+line+"\n\n") {
			t.Errorf("stdout:\n%s", o.String())
		}
		if want := "nixpushd: install-hook: cannot write " + etc + ": permission denied; add the line above by hand, or run as root\n"; e.String() != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", e.String(), want)
		}
		if readString(t, etc) != debian {
			t.Errorf("nix.conf changed")
		}
	})

	t.Run("missing file is created", func(t *testing.T) {
		fresh := filepath.Join(t.TempDir(), "nix.conf")
		_, _, code := runBinAt(t, nixpushd, "install-hook", "--nix-conf", fresh)
		st, err := os.Stat(fresh)
		if code != 0 || err != nil || st.Mode().Perm() != 0o644 || !strings.HasSuffix(readString(t, fresh), line+"\n") {
			t.Errorf("exit %d, %v, %v", code, err, st)
		}
	})

	t.Run("a symlinked nix.conf: its target is edited", func(t *testing.T) {
		d := t.TempDir()
		real, link := filepath.Join(d, "real.conf"), filepath.Join(d, "nix.conf")
		os.WriteFile(real, []byte(debian), 0o644)
		os.Symlink("real.conf", link)
		_, _, code := runBinAt(t, nixpushd, "install-hook", "--nix-conf", link)
		if fi, err := os.Lstat(link); code != 0 || err != nil || fi.Mode()&os.ModeSymlink == 0 || !strings.Contains(readString(t, real), line) {
			t.Errorf("exit %d; link %v %v", code, fi, err)
		}
	})

	t.Run("no nixpushd-hook beside the binary", func(t *testing.T) {
		// The test binary's directory has no link.
		_, errOut, code := runBin(t, nil, "install-hook", "--nix-conf", filepath.Join(t.TempDir(), "nix.conf"))
		want := "nixpushd-hook beside " + bin + ": create it with `ln -s nixpushd "
		if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--hook PATH") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		_, errOut, code = runBin(t, nil, "install-hook", "--hook", "nixpushd-hook")
		if code != 2 || !strings.Contains(errOut, "absolute path") {
			t.Errorf("--hook relative: exit %d: %s", code, errOut)
		}
	})
}

// runBinAt is runBin for another copy of the binary.
func runBinAt(t *testing.T, path string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	saved := bin
	bin = path
	defer func() { bin = saved }()
	stdout, stderr, code = runBin(t, nil, args...)
	return stdout, stderr, code
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixpushd/nixpushd/internal/fsutil"
)

// The nix.conf a multi-user Nix (its nix-daemon) reads.
const defaultNixConf = "/etc/nix/nix.conf"

// runInstallHook sets post-build-hook in nix.conf to nixpushd-hook: once,
// keeping every other line as it is. argv0 is how this binary was called,
// to find the nixpushd-hook link beside it.
func runInstallHook(_ context.Context, argv0 string, args []string, stdout, _ io.Writer) error {
	flags := flag.NewFlagSet("install-hook", flag.ContinueOnError)
	conf := flags.String("nix-conf", defaultNixConf, "the nix.conf to edit (a single-user Nix reads ~/.config/nix/nix.conf)")
	hookPath := flags.String("hook", "", "the hook program to set (default: nixpushd-hook beside this nixpushd, as make install links it)")
	force := flags.Bool("force", false, "replace a post-build-hook that names another program")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return usageError{fmt.Sprintf("install-hook: unexpected argument %q (see nixpushd install-hook -h)", flags.Arg(0))}
	}
	hook := *hookPath
	if hook == "" {
		var err error
		if hook, err = defaultHookPath(argv0); err != nil {
			return err
		}
	} else {
		if !filepath.IsAbs(hook) {
			return usageError{fmt.Sprintf("install-hook: --hook %s: Nix needs an absolute path", hook)}
		}
		if _, err := os.Stat(hook); err != nil {
			return fmt.Errorf("install-hook: --hook: %w", err)
		}
	}

	// Edit the file a symlink points to, not the link.
	target, err := filepath.EvalSymlinks(*conf)
	if errors.Is(err, fs.ErrNotExist) {
		target, err = *conf, nil
	}
	if err != nil {
		return fmt.Errorf("install-hook: %w", err)
	}
	old, mode, err := readConf(target)
	if err != nil {
		return fmt.Errorf("install-hook: %w", err)
	}
	edit := setPostBuildHook(old, hook, *force)
	switch {
	case edit.already:
		fmt.Fprintf(stdout, "post-build-hook = %s is already set in %s (line %d): nothing changed.\n", hook, *conf, edit.line)
		return nil
	case edit.other != "":
		return fmt.Errorf("install-hook: %s line %d already sets post-build-hook = %s; nothing changed (--force replaces it with %s)", *conf, edit.line, edit.other, hook)
	}
	line := "post-build-hook = " + hook
	if err := writeConf(target, edit.text, mode); err != nil {
		fmt.Fprintf(stdout, "Add this line to %s, then restart the nix-daemon (systemctl restart nix-daemon):\n\n%s\n\n", *conf, line)
		if strings.HasPrefix(target, "/nix/store/") {
			return fmt.Errorf("install-hook: %s is in the Nix store (NixOS): set nix.settings.post-build-hook, or services.nixpushd.postBuildHook, instead", *conf)
		}
		// The cause alone: the path may be writeConf's temp file.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("install-hook: cannot write %s: %w; add the line above by hand, or run as root", *conf, err)
	}
	verb := "Added"
	if edit.replaced != "" {
		verb = "Replaced post-build-hook = " + edit.replaced + " with"
	}
	fmt.Fprintf(stdout, "%s %s in %s.\nRestart the nix-daemon to use it: systemctl restart nix-daemon\n", verb, line, *conf)
	return nil
}

// defaultHookPath is nixpushd-hook in the directory of the nixpushd that
// runs, as it was called: through a profile's bin, not the store path it
// links to, so that nix.conf keeps working across upgrades.
func defaultHookPath(argv0 string) (string, error) {
	p := argv0
	if !strings.Contains(p, "/") {
		p, _ = exec.LookPath(p)
	}
	if p == "" {
		p, _ = os.Executable()
	}
	p, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("install-hook: %w", err)
	}
	hook := filepath.Join(filepath.Dir(p), "nixpushd-hook")
	if _, err := os.Stat(hook); err != nil {
		return "", fmt.Errorf("install-hook: no %s beside %s: create it with `ln -s nixpushd %s` (make install does), or give --hook PATH", hook, p, hook)
	}
	return hook, nil
}

// readConf reads nix.conf and its mode; a missing file is empty, 0644.
func readConf(path string) ([]byte, fs.FileMode, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0o644, nil
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	return b, st.Mode().Perm(), nil
}

// writeConf replaces nix.conf whole, with its mode and owner. A file
// without write permission is left alone, even by root: someone made it
// read-only on purpose (configuration management, NixOS).
func writeConf(path string, data []byte, mode fs.FileMode) error {
	st, statErr := os.Stat(path)
	if statErr == nil && mode&0o222 == 0 {
		return &fs.PathError{Op: "write", Path: path, Err: fs.ErrPermission}
	}
	if err := fsutil.WriteFileAtomic(path, data, mode); err != nil {
		return err
	}
	if statErr == nil {
		if s, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			return os.Chown(path, int(s.Uid), int(s.Gid))
		}
	}
	return nil
}

// hookEdit is what setPostBuildHook did to a nix.conf.
type hookEdit struct {
	text     []byte // the new file (when neither already nor other)
	already  bool   // the hook is the one set: nothing to do
	other    string // another hook is set, and not forced: nothing done
	replaced string // the hook replaced (--force)
	line     int    // 1-based line of the setting found
}

// setPostBuildHook sets post-build-hook in a nix.conf's text. Nix takes
// the last assignment of a setting, so that is the one looked at and
// replaced; every other line, comments and includes among them, stays
// byte for byte. An empty assignment (`post-build-hook =`) sets no hook
// and is replaced without force.
func setPostBuildHook(conf []byte, hook string, force bool) hookEdit {
	lines := bytes.SplitAfter(conf, []byte("\n"))
	last, value := -1, ""
	for i, l := range lines {
		if name, v, ok := confSetting(string(l)); ok && name == "post-build-hook" {
			last, value = i, v
		}
	}
	newLine := "post-build-hook = " + hook + "\n"
	var e hookEdit
	switch {
	case last < 0:
		text := append([]byte{}, conf...)
		if len(text) > 0 && text[len(text)-1] != '\n' {
			text = append(text, '\n')
		}
		e.text = append(text, "# nixpushd: hand every build to the daemon (nixpushd install-hook)\n"+newLine...)
		return e
	case value == hook:
		return hookEdit{already: true, line: last + 1}
	case value != "" && !force:
		return hookEdit{other: value, line: last + 1}
	}
	e.replaced, e.line = value, last+1
	lines[last] = []byte(newLine)
	e.text = bytes.Join(lines, nil)
	return e
}

// confSetting parses one nix.conf line as Nix does: `name = value`, with
// `#` starting a comment; include lines and blank ones are no setting.
func confSetting(line string) (name, value string, ok bool) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	name, value, ok = strings.Cut(line, "=")
	if !ok {
		return "", "", false
	}
	name = strings.TrimSpace(name)
	if name == "" || strings.ContainsAny(name, " \t") {
		return "", "", false
	}
	return name, strings.Join(strings.Fields(value), " "), true
}

package nixosmodule

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// unitFile is a parsed systemd unit: section → key → values, in order.
type unitFile map[string]map[string][]string

// parseUnit reads a unit file as systemd does: # and ; comments, a
// trailing backslash continues the line (replaced by a space).
func parseUnit(text string) (unitFile, error) {
	u := unitFile{}
	section := ""
	var pending string
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if pending == "" {
			trimmed := strings.TrimSpace(line)
			if trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";") {
				continue
			}
		} else if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
			continue // comments inside a continued line are skipped
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line = strings.TrimSpace(pending + line)
		pending = ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: not KEY=VALUE in a section: %q", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if pending != "" {
		return nil, fmt.Errorf("the file ends in a continued line")
	}
	return u, sc.Err()
}

func readUnit(t *testing.T, name string) unitFile {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot(t), "nixos-module", name))
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(string(text))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return u
}

// normBool makes systemd's boolean spellings comparable.
func normBool(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			v = "true"
		case "no", "false", "off", "0":
			v = "false"
		}
		out[i] = v
	}
	return out
}

// words splits the values of a dependency list (After=a b) into a set.
func words(vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, strings.Fields(v)...)
	}
	sort.Strings(out)
	return out
}

func sorted(vs []string) []string {
	out := slices.Clone(vs)
	sort.Strings(out)
	return out
}

// compareSection compares the keys of a unit file section with a NixOS
// serviceConfig/socketConfig, except those in skip.
func compareSection(t *testing.T, file string, got map[string][]string, module map[string]any, skip ...string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range module {
		keys[k] = true
	}
	for k := range keys {
		if slices.Contains(skip, k) {
			continue
		}
		var m []string
		if v, ok := module[k]; ok {
			m = unitValues(v)
		}
		f := got[k]
		if !slices.Equal(normBool(f), normBool(m)) {
			t.Errorf("%s: %s = %q, but the module sets %q", file, k, f, m)
		}
	}
}

// The example units are what the module renders for the "example"
// scenario: same keys, same values, same daemon arguments.
func TestExampleUnitsMatchModule(t *testing.T) {
	r := scenario(t, "example")
	if len(r.FailedAssertions) != 0 {
		t.Fatalf("failed assertions: %q", r.FailedAssertions)
	}

	svc := readUnit(t, "nixpushd.service")
	s := r.Service
	compareSection(t, "nixpushd.service [Service]", svc["Service"], s.ServiceConfig,
		"ExecStart", "LoadCredential", "Environment")

	// LoadCredential: same credential names (the paths are the user's).
	credNames := func(vs []string) []string {
		var out []string
		for _, v := range vs {
			name, _, _ := strings.Cut(v, ":")
			out = append(out, name)
		}
		return sorted(out)
	}
	if f, m := credNames(svc["Service"]["LoadCredential"]), credNames(unitValues(s.ServiceConfig["LoadCredential"])); !slices.Equal(f, m) {
		t.Errorf("nixpushd.service loads credentials %q, the module %q", f, m)
	}

	// ExecStart: the same arguments after the program.
	fileArgs, err := splitExec(strings.Join(svc["Service"]["ExecStart"], " "), map[byte]string{'d': "%d"})
	if err != nil {
		t.Fatalf("nixpushd.service ExecStart: %v", err)
	}
	modArgs := execArgs(t, r)
	if !slices.Equal(fileArgs[1:], modArgs[1:]) {
		t.Errorf("ExecStart arguments differ:\nnixpushd.service %q\nmodule           %q", fileArgs[1:], modArgs[1:])
	}
	if filepath.Base(fileArgs[0]) != "nixpushd" {
		t.Errorf("nixpushd.service runs %s", fileArgs[0])
	}

	unit := svc["Unit"]
	for _, key := range []string{"StartLimitIntervalSec", "StartLimitBurst"} {
		if f, m := strings.Join(unit[key], ""), unitValue(s.UnitConfig, key); f == "" || f != m {
			t.Errorf("nixpushd.service %s = %q, module %q (both must set it)", key, f, m)
		}
	}
	if d := strings.Join(unit["Description"], ""); d != s.Description {
		t.Errorf("Description %q, module %q", d, s.Description)
	}
	for key, m := range map[string][]string{
		"Requires":      s.Requires,
		"Wants":         s.Wants,
		"After":         s.After,
		"Documentation": s.Documentation,
	} {
		if f := words(unit[key]); !slices.Equal(f, sorted(m)) {
			t.Errorf("nixpushd.service %s = %q, module %q", key, f, sorted(m))
		}
	}
	if f := words(svc["Install"]["WantedBy"]); !slices.Equal(f, sorted(s.WantedBy)) {
		t.Errorf("nixpushd.service WantedBy = %q, module %q", f, s.WantedBy)
	}

	sock := readUnit(t, "nixpushd.socket")
	k := r.Socket
	compareSection(t, "nixpushd.socket [Socket]", sock["Socket"], k.SocketConfig, "ListenStream")
	if f := sock["Socket"]["ListenStream"]; !slices.Equal(f, k.ListenStreams) {
		t.Errorf("nixpushd.socket ListenStream = %q, module %q", f, k.ListenStreams)
	}
	if d := strings.Join(sock["Unit"]["Description"], ""); d != k.Description {
		t.Errorf("nixpushd.socket Description %q, module %q", d, k.Description)
	}
	if f := words(sock["Install"]["WantedBy"]); !slices.Equal(f, sorted(k.WantedBy)) {
		t.Errorf("nixpushd.socket WantedBy = %q, module %q", f, k.WantedBy)
	}
}

// renderUnits writes a module's units as NixOS would (enough of it for
// systemd-analyze verify: NixOS puts wantedBy into symlinks, not [Install]).
func renderUnits(r report, exe string) (service, socket string) {
	service = renderService(r.Service, r.Package, exe)

	var b strings.Builder
	k := r.Socket
	fmt.Fprintf(&b, "[Unit]\nDescription=%s\n\n[Socket]\n", k.Description)
	for _, l := range k.ListenStreams {
		fmt.Fprintf(&b, "ListenStream=%s\n", l)
	}
	writeConfig(&b, k.SocketConfig, func(_, v string) string { return v })
	return service, b.String()
}

// renderGC writes nixpushd-gc.service and nixpushd-gc.timer.
func renderGC(r report, exe string) (service, timer string) {
	var b strings.Builder
	fmt.Fprintf(&b, "[Unit]\nDescription=%s\n\n[Timer]\n", r.GCTimer.Description)
	writeConfig(&b, r.GCTimer.TimerConfig, func(_, v string) string { return v })
	return renderService(r.GCService, r.Package, exe), b.String()
}

func renderService(s *service, pkg, exe string) string {
	var b strings.Builder
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", s.Description)
	for _, d := range s.Documentation {
		fmt.Fprintf(&b, "Documentation=%s\n", d)
	}
	for key, vs := range map[string][]string{"Requires": s.Requires, "Wants": s.Wants, "After": s.After} {
		if len(vs) > 0 {
			fmt.Fprintf(&b, "%s=%s\n", key, strings.Join(vs, " "))
		}
	}
	b.WriteString("\n[Service]\n")
	writeConfig(&b, s.ServiceConfig, func(k, v string) string {
		if k == "ExecStart" {
			return strings.Replace(v, pkg+"/bin/nixpushd", exe, 1)
		}
		return v
	})
	return b.String()
}

func writeConfig(b *strings.Builder, cfg map[string]any, edit func(k, v string) string) {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range unitValues(cfg[k]) {
			fmt.Fprintf(b, "%s=%s\n", k, edit(k, v))
		}
	}
}

// systemd itself accepts the units, the module's and the examples, without
// a single warning (unknown keys, bad escapes, …).
func TestUnitsVerify(t *testing.T) {
	analyze := testenv.LookPath(t, "systemd-analyze", "install systemd (Debian's systemd package has it; .ci/install-deps installs it)")
	exe := filepath.Join(daemonBinary(t), "bin", "nixpushd")
	root := repoRoot(t)

	verify := func(t *testing.T, service, socket string) {
		verifyUnits(t, analyze, map[string]string{"nixpushd.service": service, "nixpushd.socket": socket})
	}

	for _, name := range []string{"full", "defaults", "example"} {
		t.Run("module/"+name, func(t *testing.T) {
			service, socket := renderUnits(scenario(t, name), exe)
			verify(t, service, socket)
		})
	}
	for _, name := range []string{"gc", "gcDefaults"} {
		t.Run("module/"+name, func(t *testing.T) {
			r := scenario(t, name)
			service, socket := renderUnits(r, exe)
			gcService, gcTimer := renderGC(r, exe)
			verifyUnits(t, analyze, map[string]string{"nixpushd.service": service, "nixpushd.socket": socket,
				"nixpushd-gc.service": gcService, "nixpushd-gc.timer": gcTimer})
		})
	}
	t.Run("examples", func(t *testing.T) {
		service, err := os.ReadFile(filepath.Join(root, "nixos-module", "nixpushd.service"))
		if err != nil {
			t.Fatal(err)
		}
		socket, err := os.ReadFile(filepath.Join(root, "nixos-module", "nixpushd.socket"))
		if err != nil {
			t.Fatal(err)
		}
		verify(t, strings.ReplaceAll(string(service), "/usr/local/bin/nixpushd", exe), string(socket))
	})
}

// verifyUnits runs systemd-analyze verify on units (file name → text) and
// fails on any message about them.
func verifyUnits(t *testing.T, analyze string, units map[string]string) {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for name := range units {
		files = append(files, filepath.Join(dir, name))
	}
	sort.Strings(files)
	for _, f := range files {
		text := units[filepath.Base(f)]
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := runCmd(t, 30*time.Second, dir, env, analyze, append([]string{"verify", "--man=no"}, files...)...)
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Warnings go to stderr with rc 0: runCmd only shows stderr on
	// failure, so run again collecting both.
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...)
	cmd.Dir, cmd.Env = dir, env
	all, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(string(all), "\n") {
		if strings.Contains(line, "nixpushd") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	if t.Failed() {
		for _, f := range files {
			t.Logf("%s:\n%s", filepath.Base(f), units[filepath.Base(f)])
		}
	}
}

package nixosmodule

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// splitExec splits an ExecStart= value the way systemd does (see
// systemd.service(5), "Command lines"):
//  1. %-specifiers are expanded on the whole line: %% is %, and the
//     specifiers in spec (here %d, the credentials directory) are
//     replaced; any other specifier is an error here.
//  2. The line is split into words at whitespace; "…" and '…' quote, and
//     C-style escapes (\\, \", \n, \t, \xHH, \uHHHH, …) are decoded in and
//     out of quotes. An unknown escape is an error (systemd would warn and
//     keep it), as is a lone ; (a command separator).
//  3. In each word, $$ is $. A lone $VAR would be replaced from the
//     environment; the module never means that, so it is an error here.
func splitExec(line string, spec map[byte]string) ([]string, error) {
	var exp strings.Builder
	for i := 0; i < len(line); i++ {
		if line[i] != '%' {
			exp.WriteByte(line[i])
			continue
		}
		if i+1 == len(line) {
			return nil, errors.New("lone % at the end")
		}
		i++
		switch c := line[i]; {
		case c == '%':
			exp.WriteByte('%')
		case spec[c] != "":
			exp.WriteString(spec[c])
		default:
			return nil, fmt.Errorf("specifier %%%c would be expanded by systemd", c)
		}
	}
	s := exp.String()

	var words []string
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		if s[i] == ';' && (i+1 == len(s) || isSpace(s[i+1])) {
			return nil, errors.New("a lone ; separates commands in systemd")
		}
		var w strings.Builder
		var quote byte
		for i < len(s) {
			c := s[i]
			switch {
			case quote == 0 && isSpace(c):
				goto done
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				i++
			case quote != 0 && c == quote:
				quote = 0
				i++
			case c == '\\':
				r, n, err := cUnescape(s[i:])
				if err != nil {
					return nil, err
				}
				w.WriteString(r)
				i += n
			default:
				w.WriteByte(c)
				i++
			}
		}
	done:
		if quote != 0 {
			return nil, fmt.Errorf("unterminated %c quote", quote)
		}
		word := w.String()
		var out strings.Builder
		for j := 0; j < len(word); j++ {
			if word[j] != '$' {
				out.WriteByte(word[j])
				continue
			}
			if j+1 < len(word) && word[j+1] == '$' {
				out.WriteByte('$')
				j++
				continue
			}
			return nil, fmt.Errorf("unescaped $ in %q would be an environment variable for systemd", word)
		}
		words = append(words, out.String())
	}
	return words, nil
}

// cUnescape decodes the escape at the start of s (which starts with a
// backslash) like systemd's cunescape_one, returning the text and the
// number of bytes consumed.
func cUnescape(s string) (string, int, error) {
	if len(s) < 2 {
		return "", 0, errors.New("trailing backslash")
	}
	simple := map[byte]string{'a': "\a", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t", 'v': "\v",
		'\\': "\\", '"': "\"", '\'': "'", 's': " "}
	if r, ok := simple[s[1]]; ok {
		return r, 2, nil
	}
	hex := func(n int) (rune, error) {
		if len(s) < 2+n {
			return 0, fmt.Errorf("short escape %q", s)
		}
		v, err := strconv.ParseUint(s[2:2+n], 16, 32)
		if err != nil {
			return 0, fmt.Errorf("bad escape %q", s[:2+n])
		}
		return rune(v), nil
	}
	switch c := s[1]; {
	case c == 'x':
		v, err := hex(2)
		if err != nil || v == 0 {
			return "", 0, fmt.Errorf("bad escape %q", s[:min(len(s), 4)])
		}
		return string([]byte{byte(v)}), 4, nil
	case c == 'u' || c == 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		v, err := hex(n)
		if err != nil || v == 0 || !utf8.ValidRune(v) {
			return "", 0, fmt.Errorf("bad escape %q", s[:min(len(s), 2+n)])
		}
		return string(v), 2 + n, nil
	case c >= '0' && c <= '7':
		if len(s) < 4 {
			return "", 0, fmt.Errorf("short octal escape %q", s)
		}
		v, err := strconv.ParseUint(s[1:4], 8, 16)
		if err != nil || v == 0 || v > 255 {
			return "", 0, fmt.Errorf("bad octal escape %q", s[:4])
		}
		return string([]byte{byte(v)}), 4, nil
	}
	return "", 0, fmt.Errorf("unknown escape \\%c (systemd would keep it, with a warning)", s[1])
}

func TestSplitExec(t *testing.T) {
	spec := map[byte]string{'d': "/run/credentials/nixpushd.service"}
	cases := []struct {
		in   string
		want []string
	}{
		{`/bin/x a  b`, []string{"/bin/x", "a", "b"}},
		{`/bin/x "a b" 'c d' e"f g"h`, []string{"/bin/x", "a b", "c d", "ef gh"}},
		{`/bin/x "a\\.b" "q\"q" "t\tt" "\u00b5" "\x41"`, []string{"/bin/x", `a\.b`, `q"q`, "t\tt", "µ", "A"}},
		{`/bin/x "100%%" %d/key "$$HOME" ";"`, []string{"/bin/x", "100%", "/run/credentials/nixpushd.service/key", "$HOME", ";"}},
	}
	for _, c := range cases {
		got, err := splitExec(c.in, spec)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitExec(%s) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`/bin/x "a`, `/bin/x %n`, `/bin/x $HOME`, `/bin/x "a\d"`, `/bin/x ; /bin/y`} {
		if got, err := splitExec(bad, spec); err == nil {
			t.Errorf("splitExec(%s) = %q, want an error", bad, got)
		}
	}
}

// execArgs splits a scenario's ExecStart, keeping %d as it is.
func execArgs(t *testing.T, r report) []string {
	t.Helper()
	if r.Service == nil {
		t.Fatal("no nixpushd service")
	}
	line, _ := r.Service.ServiceConfig["ExecStart"].(string)
	args, err := splitExec(line, map[byte]string{'d': "%d"})
	if err != nil {
		t.Fatalf("ExecStart is not a valid systemd command line: %v\n%s", err, line)
	}
	return args
}

// The daemon binary, built once from this checkout for all tests.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go" // not found: the error of running it says so
}

// daemonBinary builds ./cmd/nixpushd into a package-like layout,
// DIR/bin/nixpushd (plus the nixpushd-hook alias), and returns DIR.
func daemonBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "nixpushd-module-test-")
		if buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "bin")
		_, buildErr = runCmd(t, 5*time.Minute, root, os.Environ(), goTool(), "build", "-o", filepath.Join(bin, "nixpushd"), "./cmd/nixpushd")
		if buildErr == nil {
			buildErr = os.Symlink("nixpushd", filepath.Join(bin, "nixpushd-hook"))
		}
	})
	if buildErr != nil {
		t.Fatalf("building the daemon: %v", buildErr)
	}
	return buildDir
}

// credentialsDir makes what systemd's LoadCredential= would: a directory
// with the signing key and the S3 credentials of the module's service.
func credentialsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"secret-key":      "test.nixpushd.example-1:" + base64.StdEncoding.EncodeToString(priv) + "\n",
		"aws-credentials": "AWS_ACCESS_KEY_ID=nixbuilder\nAWS_SECRET_ACCESS_KEY=not-a-real-secret\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkConfig runs the scenario's ExecStart, as systemd would run it but
// with --check-config added, and returns the daemon's output.
// It also returns the command (for messages) and the credentials directory.
func checkConfig(t *testing.T, r report, extra ...string) (out, info, creds string, err error) {
	t.Helper()
	pkg := daemonBinary(t)
	creds = credentialsDir(t)
	line, _ := r.Service.ServiceConfig["ExecStart"].(string)
	args, err := splitExec(line, map[byte]string{'d': creds})
	if err != nil {
		t.Fatalf("ExecStart is not a valid systemd command line: %v\n%s", err, line)
	}
	if want := r.Package + "/bin/nixpushd"; args[0] != want {
		t.Fatalf("ExecStart runs %s, want %s", args[0], want)
	}
	args[0] = filepath.Join(pkg, "bin", "nixpushd")
	args = append(args, extra...)
	args = append(args, "--check-config")

	cmd := exec.Command(args[0], args[1:]...)
	// What systemd gives the service: StateDirectory= sets STATE_DIRECTORY,
	// LoadCredential= sets CREDENTIALS_DIRECTORY.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"CREDENTIALS_DIRECTORY=" + creds,
		// --check-config resolves S3 credentials (without the network);
		// scenarios without a credentialsFile get them from the environment.
		"AWS_ACCESS_KEY_ID=module-test", "AWS_SECRET_ACCESS_KEY=module-test",
	}
	// StateDirectory=a b → STATE_DIRECTORY=/var/lib/a:/var/lib/b, and so on.
	for key, dir := range map[string]string{"StateDirectory": "/var/lib/", "CacheDirectory": "/var/cache/", "RuntimeDirectory": "/run/"} {
		if v, ok := r.Service.ServiceConfig[key]; ok {
			var dirs []string
			for _, d := range unitValues(v) {
				for _, f := range strings.Fields(d) {
					dirs = append(dirs, dir+f)
				}
			}
			env := strings.ToUpper(strings.TrimSuffix(key, "Directory")) + "_DIRECTORY"
			cmd.Env = append(cmd.Env, env+"="+strings.Join(dirs, ":"))
		}
	}
	for k, v := range r.Service.Environment {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), fmt.Sprintf("%q\n%s", args, stderr.String()), creds, err
}

// checkedConfig parses what `daemon --check-config` prints on stdout: one
// line of JSON with every setting as a string.
func checkedConfig(t *testing.T, out string) map[string]string {
	t.Helper()
	rest := strings.TrimSpace(out)
	var m map[string]string
	if err := json.Unmarshal([]byte(rest), &m); err != nil {
		t.Fatalf("--check-config JSON: %v\n%s", err, out)
	}
	return m
}

func TestExecStartRoundTrip(t *testing.T) {
	ev := evalAll(t)
	type check struct{ key, value string }
	cases := map[string][]check{
		"defaults": {
			{"to", "file:///var/lib/nixpushd/cache"},
			{"compression", "xz"},
			{"jobs", strconv.Itoa(runtime.NumCPU())},
			{"watch-store", "true"},
			{"skip-signed-by", "cache.nixos.org-1"},
			{"push-derivations", "false"},
			{"nar-listings", "false"},
			{"index-debug-info", "false"},
			{"build-logs", "false"},
			{"build-log-dir", "/nix/var/log/nix"},
			{"realisations", "true"},
		},
		"full": {
			{"to", fullURL + "&region=" + fullRegion},
			{"compression", "zstd"},
			{"compression-level", "19"},
			{"log-level", "debug"},
			{"jobs", "3"},
			{"watch-store", "false"},
			{"reconcile-interval", "10m0s"},
			{"skip-signed-by", strings.Join(fullSkip, ",")},
			{"push-derivations", "true"},
			{"nar-listings", "true"},
			{"index-debug-info", "true"},
			{"build-logs", "true"},
			{"realisations", "false"},
			{"include", fullInclude},
			{"exclude", fullExclude},
			{"secret-key-file", "CREDS/secret-key"},
			{"credentials-file", "CREDS/aws-credentials"},
		},
		"example": {
			{"to", "s3://nix-cache?endpoint=s3.example.org"},
			{"secret-key-file", "CREDS/secret-key"},
			{"credentials-file", "CREDS/aws-credentials"},
		},
		"noSkip": {{"skip-signed-by", ""}},
		"operator": {
			{"ca-file", "/etc/ssl/certs/ca-certificates.crt"},
			{"status-group", "adm"},
			{"metrics-listen", "127.0.0.1:9101"},
		},
		"pins": {{"pin", "a.b_c-1=" + pinTricky + ",system=/run/current-system"}},
		"gc": {
			{"to", fullURL + "&region=" + fullRegion},
			{"pin", "system=/run/current-system"},
			{"credentials-file", "CREDS/aws-credentials"},
		},
	}
	for i, u := range goodURLs {
		cases[fmt.Sprintf("goodURL%d", i)] = []check{{"to", u}}
	}
	// Where the hook looks, the daemon must listen and drain.
	common := []check{
		{"socket", "/run/nixpushd/nixpushd.sock"},
		{"state-dir", "/var/lib/nixpushd"},
		{"spool-dir", "/var/lib/nixpushd/spool"},
		{"temp-dir", "/var/cache/nixpushd"},
	}
	for name, checks := range cases {
		t.Run(name, func(t *testing.T) {
			r := ev.Scenarios[name]
			if len(r.FailedAssertions) != 0 {
				t.Fatalf("failed assertions: %q", r.FailedAssertions)
			}
			out, info, creds, err := checkConfig(t, r)
			if err != nil {
				t.Fatalf("nixpushd daemon --check-config: %v\n%s\n%s", err, out, info)
			}
			got := checkedConfig(t, out)
			for _, c := range append(checks, common...) {
				// The credentials directory (%d) differs per test.
				v := strings.Replace(c.value, "CREDS", creds, 1)
				if got[c.key] != v {
					t.Errorf("--check-config: %s = %q, want %q\n%s\n%s", c.key, got[c.key], v, out, info)
				}
			}
		})
	}
}

// The module's URL check must agree with the daemon's: what one rejects,
// the other must too (else a typo would only show up as a failing
// service, or a good URL would be refused by nixos-rebuild).
//
// Known differences, where the module is the stricter one on purpose:
// the daemon reads file://relative/dir as the relative directory
// "relative/dir" (under systemd: /relative/dir, on a read-only root).
var daemonLenient = map[string]bool{"file://relative/dir": true}

func TestURLValidationMatchesDaemon(t *testing.T) {
	r := scenario(t, "defaults")
	for _, u := range badURLs {
		_, info, _, err := checkConfig(t, r, "--to="+u)
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.ExitCode() == 2:
		case err == nil && daemonLenient[u]:
			t.Logf("known difference: the daemon accepts --to=%s, the module rejects it", u)
		default:
			t.Errorf("the module rejects --to=%s, but the daemon's --check-config gives %v (want exit status 2)\n%s", u, err, info)
		}
	}
}

// The module's pin name check agrees with the daemon's.
func TestPinNamesMatchDaemon(t *testing.T) {
	r := scenario(t, "defaults")
	for _, n := range badPinNames {
		_, info, _, err := checkConfig(t, r, "--pin="+n+"=/x")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("the module rejects pin name %q, but the daemon's --check-config gives %v (want exit status 2)\n%s", n, err, info)
		}
	}
	for _, n := range goodPinNames {
		out, info, _, err := checkConfig(t, r, "--pin="+n+"=/x")
		if err != nil {
			t.Errorf("the module accepts pin name %q, the daemon does not: %v\n%s", n, err, info)
			continue
		}
		if got := checkedConfig(t, out)["pin"]; got != n+"=/x" {
			t.Errorf("--pin=%s=/x: pin = %q", n, got)
		}
	}
}

// nixpushd-gc works on the cache the daemon pushes to, the default
// file:// one included, with the daemon's state directory and log level.
func TestGCTargetMatchesDaemon(t *testing.T) {
	for _, name := range []string{"gc", "gcDefaults", "gcOwnCreds"} {
		t.Run(name, func(t *testing.T) {
			r := scenario(t, name)
			if len(r.FailedAssertions) != 0 {
				t.Fatalf("failed assertions: %q", r.FailedAssertions)
			}
			out, info, _, err := checkConfig(t, r)
			if err != nil {
				t.Fatalf("nixpushd daemon --check-config: %v\n%s\n%s", err, out, info)
			}
			daemon := checkedConfig(t, out)
			gc := map[string]string{}
			for _, a := range serviceArgs(t, r.GCService)[2:] {
				k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				if !ok {
					t.Fatalf("nixpushd-gc argument %q is not --flag=value", a)
				}
				gc[k] = v
			}
			for _, k := range []string{"to", "state-dir", "log-level"} {
				if gc[k] != daemon[k] {
					t.Errorf("nixpushd-gc --%s=%q, the daemon has %q", k, gc[k], daemon[k])
				}
			}
		})
	}
}

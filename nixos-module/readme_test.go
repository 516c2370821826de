package nixosmodule

// Issue 11, "How it is shown": the README's module examples evaluate with
// the real lib.evalModules against this checkout's module, so the README
// cannot drift from the module. The only changes made to them are in
// readmeNixSubsts; each must still match.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeBlocks returns the fenced code blocks (info string, text) under a
// README heading, up to the next heading of the same or a higher level.
func readmeBlocks(t *testing.T, heading string) (infos, texts []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(heading, ' ')
	in, fenced := false, false
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if fenced {
			if line == "```" {
				fenced = false
				texts = append(texts, cur.String())
				cur.Reset()
			} else {
				cur.WriteString(line + "\n")
			}
			continue
		}
		if line == heading {
			in = true
			continue
		}
		if n := strings.IndexByte(line, ' '); in && n > 0 && n <= level && strings.Trim(line[:n], "#") == "" {
			break
		}
		if in && strings.HasPrefix(line, "```") {
			fenced = true
			infos = append(infos, strings.TrimPrefix(line, "```"))
		}
	}
	if !in {
		t.Fatalf("README.md has no heading %q", heading)
	}
	return infos, texts
}

// readmeNixBlock returns the one nix block of the section that contains
// every marker.
func readmeNixBlock(t *testing.T, heading string, markers ...string) string {
	t.Helper()
	infos, texts := readmeBlocks(t, heading)
	var found []string
	for i, text := range texts {
		if infos[i] != "nix" {
			continue
		}
		all := true
		for _, m := range markers {
			all = all && strings.Contains(text, m)
		}
		if all {
			found = append(found, text)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README %q: %d nix blocks with %q, want 1", heading, len(found), markers)
	}
	return found[0]
}

// nixSubst is one change to a README example before it is evaluated.
type nixSubst struct {
	old, new, why string
}

// substitute applies the substitutions, failing for any that no longer
// matches (the README changed: update the test with it).
func substitute(t *testing.T, what, text string, subs []nixSubst) string {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s.old) {
			t.Errorf("README drift: %s no longer contains %q (substituted: %s); update readme_test.go", what, s.old, s.why)
			continue
		}
		text = strings.ReplaceAll(text, s.old, s.new)
	}
	return text
}

// fromZeroSnippet is the services.nixpushd snippet init prints, as the
// README shows it in "From zero to a working cache".
func fromZeroSnippet(t *testing.T) string {
	t.Helper()
	infos, texts := readmeBlocks(t, "## From zero to a working cache")
	for i, text := range texts {
		if infos[i] != "console" {
			continue
		}
		start := strings.Index(text, "  services.nixpushd = {\n")
		if start < 0 {
			continue
		}
		end := strings.Index(text[start:], "\n  };\n")
		if end < 0 {
			t.Fatalf("the services.nixpushd snippet in %q does not end in `  };`", "From zero")
		}
		return text[start : start+end+len("\n  };\n")]
	}
	t.Fatal(`README "From zero to a working cache" shows no services.nixpushd snippet`)
	return ""
}

// pkiStub declares NixOS' security.pki.certificateFiles, which the
// private-CA example sets and stubs.nix (the module's own needs) lacks.
const pkiStub = `({ lib, ... }: { options.security.pki.certificateFiles = lib.mkOption { type = lib.types.listOf lib.types.path; default = [ ]; }; })`

func TestReadmeModuleExamples(t *testing.T) {
	lib := nixpkgsLib(t)
	inst := nixTool(t, "nix-instantiate")

	// configuration.nix of the building machine.
	conf := substitute(t, "the configuration.nix example in ## NixOS",
		readmeNixBlock(t, "## NixOS", "services.nixpushd", "imports"), []nixSubst{
			{`builtins.fetchTarball "https://github.com/nixpushd/nixpushd/archive/main.tar.gz"`, `(toString ./.)`,
				"this checkout (the expression is evaluated in the repository root) instead of a download"},
			{`"${nixpushd}/nixos-module"`, `"${nixpushd}/nixos-module/default.nix"`,
				"the same module, named by its file: eval.nix loads ../default.nix too, and the module system loads one file once"},
		})
	// The client example.
	var client string
	infos, texts := readmeBlocks(t, "## NixOS")
	for i, text := range texts {
		if infos[i] == "nix" && strings.Contains(text, "extra-substituters") && !strings.Contains(text, "services.nixpushd") {
			client = text
		}
	}
	if client == "" {
		t.Error(`README "## NixOS" has no client example (nix.settings without services.nixpushd)`)
	}
	// What init prints for the building machine.
	zero := "{ ... }: {\n" + fromZeroSnippet(t) + "}\n"
	// The private CA, a fragment of a configuration.
	ca := filepath.Join(t.TempDir(), "homelab-ca.pem")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644)
	caConf := substitute(t, "the caFile example in ## MinIO with a private certificate",
		readmeNixBlock(t, "## MinIO with a private certificate (as in the guides)", "caFile"), []nixSubst{
			{"./homelab-ca.pem", ca, "a CA file that exists (an absolute path literal)"},
		})
	caConf = "{ imports = [ " + pkiStub + " ]; config = {\n" + caConf + "}; }"

	expr := fmt.Sprintf("let h = import ./nixos-module/test/eval.nix { libPath = %s; }; in {\n", nixString(lib))
	expr += "configuration = h.report (" + conf + ");\n"
	expr += "fromZero = h.report (" + zero + ");\n"
	expr += "caFile = h.report (" + caConf + ");\n"
	if client != "" {
		expr += "client = h.report (" + client + ");\n"
	}
	expr += "}\n"
	var got map[string]report
	if err := evalJSON(t, inst, expr, &got); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name        string
		url         string
		credentials bool
		extra       []string
	}{
		{"configuration", "s3://nix-cache?endpoint=s3.homelab.local", true, nil},
		{"fromZero", "s3://nix-cache?endpoint=127.0.0.1:9000&scheme=http", true, nil},
		{"caFile", "s3://nix-cache?endpoint=minio.homelab.local", true, []string{"--ca-file=/nix/store/"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := got[c.name]
			if len(r.FailedAssertions) != 0 || len(r.Warnings) != 0 {
				t.Fatalf("failed assertions %q, warnings %q", r.FailedAssertions, r.Warnings)
			}
			args := execArgs(t, r)
			if !slices.Contains(args, "--to="+c.url) {
				t.Errorf("ExecStart lacks --to=%s: %q", c.url, args)
			}
			for _, want := range append([]string{"--credentials-file=%d/aws-credentials", "--secret-key-file=%d/secret-key"}, c.extra...) {
				if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, want) }) {
					t.Errorf("ExecStart lacks %s: %q", want, args)
				}
			}
			lc := unitValue(r.Service.ServiceConfig, "LoadCredential")
			for _, want := range []string{"aws-credentials:/etc/nixpushd/aws-credentials", "secret-key:/etc/nixpushd/secret-key"} {
				if !strings.Contains(lc, want) {
					t.Errorf("LoadCredential = %q, lacks %s", lc, want)
				}
			}
		})
	}
	// The building machine also substitutes from its cache, and trusts it.
	for _, name := range []string{"configuration", "client"} {
		if name == "client" && client == "" {
			continue
		}
		s := got[name].NixSettings
		subs := fmt.Sprint(s["extra-substituters"])
		keys := fmt.Sprint(s["extra-trusted-public-keys"])
		if !strings.Contains(subs, "https://s3.homelab.local/nix-cache/") || !regexp.MustCompile(`s3\.homelab\.local-1:[A-Za-z0-9+/]{43}=`).MatchString(keys) {
			t.Errorf("%s: nix.settings = %v", name, s)
		}
	}
	if got["client"].Service != nil {
		t.Error("the client example enables the nixpushd service")
	}
	// The daemon accepts the example's command line as systemd runs it.
	if out, info, _, err := checkConfig(t, got["configuration"]); err != nil {
		t.Errorf("daemon --check-config on the README's configuration.nix: %v\n%s\n%s", err, out, info)
	}
}

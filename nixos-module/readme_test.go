package nixosmodule

// Issue 11, "How it is shown": the module examples of README.md and
// docs/*.md evaluate with the real lib.evalModules against this checkout's
// module, so the documentation cannot drift from the module. The only
// changes made to them are the nixSubsts below; each must still match.
// TestReadmeLinks checks the relative links between those files.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// Where the examples are: README.md, and the docs/ page each section
// now lives in. A heading that moved fails readmeBlocks, naming the file
// that has it now.
const (
	docReadme = "README.md"
	docSetup  = "docs/setup.md"
	docNixOS  = "docs/nixos.md"
)

// docFiles lists README.md and docs/*.md, relative to the repository root.
func docFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{docReadme}
	for _, f := range files {
		out = append(out, "docs/"+filepath.Base(f))
	}
	return out
}

// readmeBlocks returns the fenced code blocks (info string, text) under a
// heading of file (README.md or docs/….md, relative to the repository
// root), up to the next heading of the same or a higher level.
func readmeBlocks(t *testing.T, file, heading string) (infos, texts []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), file))
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
		t.Fatalf("%s has no heading %q%s; update readme_test.go with the documentation", file, heading, movedTo(t, file, heading))
	}
	return infos, texts
}

// movedTo says which other documentation files have the heading, for the
// error of a section that is not where the test looks.
func movedTo(t *testing.T, file, heading string) string {
	var in []string
	for _, f := range docFiles(t) {
		if f == file {
			continue
		}
		b, err := os.ReadFile(filepath.Join(repoRoot(t), f))
		if err == nil && slices.Contains(strings.Split(string(b), "\n"), heading) {
			in = append(in, f)
		}
	}
	if len(in) == 0 {
		return " (nor has any of README.md and docs/*.md)"
	}
	return " (" + strings.Join(in, " and ") + " has it)"
}

// readmeNixBlock returns the one nix block of the section that contains
// every marker.
func readmeNixBlock(t *testing.T, file, heading string, markers ...string) string {
	t.Helper()
	infos, texts := readmeBlocks(t, file, heading)
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
		t.Fatalf("%s %q: %d nix blocks with %q, want 1; update readme_test.go with the documentation", file, heading, len(found), markers)
	}
	return found[0]
}

// nixSubst is one change to a documented example before it is evaluated.
type nixSubst struct {
	old, new, why string
}

// substitute applies the substitutions, failing for any that no longer
// matches (the documentation changed: update the test with it).
func substitute(t *testing.T, what, text string, subs []nixSubst) string {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s.old) {
			t.Errorf("documentation drift: %s no longer contains %q (substituted: %s); update readme_test.go", what, s.old, s.why)
			continue
		}
		text = strings.ReplaceAll(text, s.old, s.new)
	}
	return text
}

// fromZeroSnippet is the services.nixpushd snippet init prints, as
// docs/setup.md shows it in "From zero to a working cache".
func fromZeroSnippet(t *testing.T) string {
	t.Helper()
	infos, texts := readmeBlocks(t, docSetup, "## From zero to a working cache")
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
			t.Fatalf("the services.nixpushd snippet in %s %q does not end in `  };`", docSetup, "From zero")
		}
		return text[start : start+end+len("\n  };\n")]
	}
	t.Fatal(`docs/setup.md "From zero to a working cache" shows no services.nixpushd snippet`)
	return ""
}

// pkiStub declares NixOS' security.pki.certificateFiles, which the
// private-CA example sets and stubs.nix (the module's own needs) lacks.
const pkiStub = `({ lib, ... }: { options.security.pki.certificateFiles = lib.mkOption { type = lib.types.listOf lib.types.path; default = [ ]; }; })`

func TestReadmeModuleExamples(t *testing.T) {
	lib := nixpkgsLib(t)
	inst := nixTool(t, "nix-instantiate")

	// configuration.nix of the building machine, and the README's shorter
	// one: both fetch the module.
	fetched := []nixSubst{
		{`builtins.fetchTarball "https://github.com/nixpushd/nixpushd/archive/main.tar.gz"`, `(toString ./.)`,
			"this checkout (the expression is evaluated in the repository root) instead of a download"},
		{`"${nixpushd}/nixos-module"`, `"${nixpushd}/nixos-module/default.nix"`,
			"the same module, named by its file: eval.nix loads ../default.nix too, and the module system loads one file once"},
	}
	conf := substitute(t, "the configuration.nix example in docs/nixos.md ## The building machine",
		readmeNixBlock(t, docNixOS, "## The building machine", "services.nixpushd", "imports"), fetched)
	landing := substitute(t, "the configuration.nix example in README.md ## On NixOS",
		readmeNixBlock(t, docReadme, "## On NixOS", "services.nixpushd", "imports"), fetched)
	// The client example.
	var client string
	infos, texts := readmeBlocks(t, docNixOS, "## Client machines")
	for i, text := range texts {
		if infos[i] == "nix" && strings.Contains(text, "extra-substituters") && !strings.Contains(text, "services.nixpushd") {
			client = text
		}
	}
	if client == "" {
		t.Error(`docs/nixos.md "## Client machines" has no client example (nix.settings without services.nixpushd)`)
	}
	// What init prints for the building machine.
	zero := "{ ... }: {\n" + fromZeroSnippet(t) + "}\n"
	// The private CA, a fragment of a configuration.
	ca := filepath.Join(t.TempDir(), "homelab-ca.pem")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644)
	caConf := substitute(t, "the caFile example in docs/setup.md ## MinIO with a private certificate",
		readmeNixBlock(t, docSetup, "## MinIO with a private certificate (as in the guides)", "caFile"), []nixSubst{
			{"./homelab-ca.pem", ca, "a CA file that exists (an absolute path literal)"},
		})
	caConf = "{ imports = [ " + pkiStub + " ]; config = {\n" + caConf + "}; }"

	expr := fmt.Sprintf("let h = import ./nixos-module/test/eval.nix { libPath = %s; }; in {\n", nixString(lib))
	expr += "configuration = h.report (" + conf + ");\n"
	expr += "readme = h.report (" + landing + ");\n"
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
		{"readme", "s3://nix-cache?endpoint=s3.homelab.local", true, nil},
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
	// The daemon accepts the examples' command lines as systemd runs them.
	for _, name := range []string{"configuration", "readme"} {
		if out, info, _, err := checkConfig(t, got[name]); err != nil {
			t.Errorf("daemon --check-config on the %s example's configuration.nix: %v\n%s\n%s", name, err, out, info)
		}
	}
}

// ------------------------------------------------------------------ links

// mdLink matches a markdown link's target (inline code already removed).
var mdLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)

// mdCode matches an inline code span.
var mdCode = regexp.MustCompile("`[^`]*`")

// headingAnchor is the anchor GitHub gives a heading: lower case, only
// letters, digits, '-' and '_' kept, spaces turned into '-'.
func headingAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mdDoc is what TestReadmeLinks needs of a markdown file: its headings'
// anchors, and the links outside code.
type mdDoc struct {
	anchors map[string]bool
	links   []string
}

func parseMD(t *testing.T, file string) mdDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), file))
	if err != nil {
		t.Fatal(err)
	}
	d := mdDoc{anchors: map[string]bool{}}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if m := regexp.MustCompile(`^#{1,6} (.*)$`).FindStringSubmatch(line); m != nil {
			a := headingAnchor(m[1])
			if n := seen[a]; n > 0 {
				d.anchors[fmt.Sprintf("%s-%d", a, n)] = true
			} else {
				d.anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range mdLink.FindAllStringSubmatch(mdCode.ReplaceAllString(line, ""), -1) {
			d.links = append(d.links, m[1])
		}
	}
	if fenced {
		t.Errorf("%s: a code block is not closed", file)
	}
	return d
}

// Every relative link in README.md and docs/*.md leads to a file that
// exists and, for a markdown file, to a heading it has; README.md links
// to every page of docs/.
func TestReadmeLinks(t *testing.T) {
	files := docFiles(t)
	if len(files) < 2 {
		t.Fatalf("no docs/*.md beside README.md")
	}
	docs := map[string]mdDoc{}
	for _, f := range files {
		docs[f] = parseMD(t, f)
	}
	linked := map[string]bool{}
	n := 0
	for _, f := range files {
		for _, l := range docs[f].links {
			if regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`).MatchString(l) {
				continue // http:, https:, mailto:…
			}
			n++
			target, anchor, _ := strings.Cut(l, "#")
			rel := f
			if target != "" {
				rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(f), target)))
				if _, err := os.Stat(filepath.Join(repoRoot(t), rel)); err != nil {
					t.Errorf("%s: link %q: %v", f, l, err)
					continue
				}
			}
			if f == docReadme {
				linked[rel] = true
			}
			if anchor == "" || !strings.HasSuffix(rel, ".md") {
				continue
			}
			d, ok := docs[rel]
			if !ok {
				d = parseMD(t, rel)
				docs[rel] = d
			}
			if !d.anchors[anchor] {
				t.Errorf("%s: link %q: %s has no heading with the anchor #%s", f, l, rel, anchor)
			}
		}
	}
	for _, f := range files[1:] {
		if !linked[f] {
			t.Errorf("README.md does not link to %s", f)
		}
	}
	t.Logf("%d relative links checked in %v", n, files)
}

package systemdtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// The Debian path of docs/setup.md, replayed as written on a clean Debian
// trixie root under systemd 257 with Debian's Nix 2.26, against a MinIO on
// the host (the machine shares the host's network). Changes to the page's
// text, each checked to still match: the MinIO's port and root user; the
// first block (packages, Go, git clone) is not run, since the root already
// has Debian's Nix and Go is the host's; `make install` runs on the host
// with DESTDIR= the machine's overlay, before it boots (the root has no
// Go). Then: the narinfo is in the bucket, and Nix 2.26 verifies the
// path's signature there.
func TestDebianPath(t *testing.T) {
	root := preparedRoot(t)
	repo := repoRoot(t)
	testenv.LookPath(t, "make", "apt-get install make")
	mio := testenv.StartMinIO(t)
	const section = "## Without NixOS: from a clean Debian machine"
	blocks := docBlocks(t, filepath.Join(repo, "docs", "setup.md"), section, "sh")
	if len(blocks) != 6 {
		t.Fatalf("docs/setup.md %q: %d sh blocks, want 6 (packages, install, init, hook, start, build); update this test", section, len(blocks))
	}
	substs := []struct{ old, new string }{
		{"127.0.0.1:9000", mio.Endpoint},
		{"minioadmin", mio.RootUser},
		{"<MinIO root password>", mio.RootPassword},
	}
	matched := make([]int, len(substs))
	apply := func(s string) string {
		for i, r := range substs {
			matched[i] += strings.Count(s, r.old)
			s = strings.ReplaceAll(s, r.old, r.new)
		}
		return s
	}

	// 1. Packages: what prepare-root.sh installed.
	if !strings.Contains(blocks[0], "apt-get install nix-setup-systemd") {
		t.Errorf("the first block no longer installs nix-setup-systemd, the package the test's root has:\n%s", blocks[0])
	}
	if ready, _ := os.ReadFile(filepath.Join(root, ".nixpushd-ci-ready")); !strings.Contains(string(ready), "nix-bin 2.26") {
		t.Errorf("the root's packages: %s, want Debian's nix-bin 2.26", ready)
	}

	// 2. make install, on the host, into the overlay.
	dir := t.TempDir()
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	install, rest, _ := strings.Cut(apply(blocks[1]), "\n")
	if !strings.HasPrefix(install, "make install ") {
		t.Fatalf("the install block does not start with make install: %q", install)
	}
	mk := exec.Command("bash", "-euc", install+` DESTDIR="$1"`, "bash", upper)
	mk.Dir = repo
	// Static: it runs on the trixie root whatever the host's libc.
	mk.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", install, err, out)
	}
	// Debian's nix.conf, plus what the test's builds need: no sandbox (as
	// in TestShippedUnitsUnderSystemd), no substituters (no network).
	debianConf, err := os.ReadFile(filepath.Join(root, "etc", "nix", "nix.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(debianConf), "sandbox = true", "sandbox = false", 1) + "experimental-features = nix-command\nsubstituters =\n"
	mkdirs(t, filepath.Join(upper, "etc", "nix"))
	if err := os.WriteFile(filepath.Join(upper, "etc", "nix", "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	m := boot(t, root, upper, work)
	t.Logf("systemd up in %v", time.Since(start).Round(time.Millisecond))
	m.sh(t, rest) // useradd

	// 3. init: the bucket, /etc/nixpushd/secret-key and aws-credentials.
	m.sh(t, apply(blocks[2]))
	m.sh(t, "test -s /etc/nixpushd/secret-key && test -s /etc/nixpushd/aws-credentials")

	// 4. install-hook, then the nix-daemon restarted.
	out := m.sh(t, apply(blocks[3]))
	const hookLine = "post-build-hook = /usr/local/bin/nixpushd-hook"
	if !strings.Contains(out, "Added "+hookLine+" in /etc/nix/nix.conf.") || !strings.Contains(out, "systemctl restart nix-daemon") {
		t.Errorf("install-hook said:\n%s", out)
	}
	if got := m.sh(t, "cat /etc/nix/nix.conf"); !strings.HasPrefix(got, conf) || !strings.HasSuffix(got, "\n"+hookLine+"\n") {
		t.Errorf("/etc/nix/nix.conf after install-hook:\n%s", got)
	}
	if out := m.sh(t, "nixpushd install-hook"); !strings.Contains(out, "already set") {
		t.Errorf("install-hook again: %s", out)
	}

	// 5. Both units enabled and started.
	m.sh(t, apply(blocks[4]))
	m.waitActive(t)

	// 6. A build as alice, through the nix-daemon and its hook; the journal
	// may take a moment, so the block is run until its grep finds the line
	// (the build itself is done after the first run). The test adds only
	// the echo of the path.
	var p string
	waitFor(t, 60*time.Second, "the build's pushed line in the journal", func() (bool, string) {
		out, err := m.run(120*time.Second, "bash", "-euo", "pipefail", "-c", apply(blocks[5])+"echo \"$p\"\n")
		if err != nil {
			return false, err.Error()
		}
		p = lastLine(out)
		return strings.Contains(out, "pushed"), out
	})
	if !strings.HasPrefix(p, "/nix/store/") || !strings.HasSuffix(p, "-hello-debian") {
		t.Fatalf("the build printed %q, want a store path", p)
	}
	hash, _, _ := strings.Cut(strings.TrimPrefix(p, "/nix/store/"), "-")
	if !mio.Has(t, "nix-cache", hash+".narinfo") {
		t.Fatalf("%s.narinfo is not in the bucket", hash)
	}
	// The bucket is public (--public): Nix reads it over http and checks
	// the signature with the key init made.
	m.sh(t, fmt.Sprintf(`nix store verify --store 'http://%s/nix-cache' --trusted-public-keys "$(nix key convert-secret-to-public </etc/nixpushd/secret-key)" --sigs-needed 1 %s`, mio.Endpoint, p))

	for i, r := range substs {
		if matched[i] == 0 {
			t.Errorf("documentation drift: %q matches nothing in docs/setup.md %q any more; update this test", r.old, section)
		}
	}
}

// docBlocks returns the text of the fenced code blocks with the info
// string under a heading of a Markdown file, up to the next heading of the
// same or a higher level.
func docBlocks(t *testing.T, file, heading, info string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(heading, ' ')
	var blocks []string
	in, fenced, want := false, false, false
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case fenced && line == "```":
			fenced = false
			if want {
				blocks = append(blocks, cur.String())
			}
		case fenced:
			cur.WriteString(line + "\n")
		case line == heading:
			in = true
		case in && strings.HasPrefix(line, "#"):
			if n := strings.IndexByte(line, ' '); n > 0 && n <= level && strings.Trim(line[:n], "#") == "" {
				return blocks
			}
		case in && strings.HasPrefix(line, "```"):
			fenced, want = true, strings.TrimPrefix(line, "```") == info
			cur.Reset()
		}
	}
	if !in {
		t.Fatalf("%s has no heading %q: update this test", file, heading)
	}
	return blocks
}

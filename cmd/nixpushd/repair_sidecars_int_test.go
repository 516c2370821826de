package main

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
	"github.com/nixpushd/nixpushd/nar"
)

// verify --repair, against MinIO with real Nix, of what lies beside the
// narinfos: an unparsable realisation (ca-derivations) and one whose
// outPath lost its narinfo, an unparsable debuginfo link, a stray one
// and a .doi nothing explains. The writer repairs what the local store
// has (byte for byte what push wrote) and names the deletions it may not
// do; the gc user's credentials do them; verify is clean after.
func TestRepairRealisationsAndDebugInfo(t *testing.T) {
	testenv.RequireNix(t)
	m := requireMinIO(t)
	c := &faultCache{lcCache: lcNewCache(t, m)}

	exprFile := filepath.Join(t.TempDir(), "default.nix")
	if err := os.WriteFile(exprFile, []byte(caExpr(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	caTop := strings.TrimSpace(string(testenv.Nix(t, "nix-build", append([]string{"--no-out-link", exprFile}, caArgs...)...)))
	dbgPath, _ := testenv.BuildFormatsPath(t, "repair-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	c.push(t, []string{"--index-debug-info"}, caTop, dbgPath)

	pushed := map[string]string{}
	var dois []string
	for k := range c.Objects(t) {
		if strings.HasPrefix(k, nar.RealisationPrefix) || strings.HasPrefix(k, "debuginfo/") {
			pushed[k] = string(c.Get(t, k))
			if strings.HasPrefix(k, nar.RealisationPrefix) {
				dois = append(dois, k)
			}
		}
	}
	link := "debuginfo/ab" + testenv.FormatsBuildID + ".debug"
	// One per CA derivation, and one per resolved derivation.
	if len(dois) < 2 || pushed[link] == "" {
		t.Fatalf("push wrote %v, want the realisations and %s", keys(pushed), link)
	}
	// Which .doi is the top's, which the dependency's.
	var topDoi, depDoi, depPath string
	slices.Sort(dois)
	for _, k := range dois {
		r, err := nar.ParseRealisation([]byte(pushed[k]))
		if err != nil {
			t.Fatal(err)
		}
		if nar.StoreDir+"/"+r.OutPath == caTop {
			topDoi = cmp.Or(topDoi, k)
		} else if depDoi == "" {
			depDoi, depPath = k, nar.StoreDir+"/"+r.OutPath
		}
	}
	if topDoi == "" || depDoi == "" {
		t.Fatalf("realisations %v: none for %s", dois, caTop)
	}

	c.put(t, topDoi, []byte(`{"id":`), "application/json")
	c.put(t, link, []byte("not json"), "application/json")
	c.remove(t, narinfoKey(t, depPath)) // the dependency's .doi loses its outPath
	stray := nar.RealisationPrefix + "sha256:" + strings.Repeat("f", 64) + "!out.doi"
	c.put(t, stray, []byte("{"), "application/json")

	r := c.verify(t)
	if r.code == 0 {
		t.Errorf("verify of the damaged cache exited 0: %v", r)
	}
	wantLine(t, "verify", r.stdout, topDoi, "realisation:")
	wantLine(t, "verify", r.stdout, depDoi, "realisation:", "outPath has no narinfo")
	wantLine(t, "verify", r.stdout, link, "debuginfo:")
	wantLine(t, "verify", r.stdout, stray, "realisation:")

	repairArgs := []string{"verify", "--to", c.S3URL, "--trusted-public-keys", c.public, "--repair", "--secret-key-file", c.secret, "--state-dir", t.TempDir()}
	r = lcRun(t, c.writer(), append(repairArgs, "--dry-run")...)
	t.Logf("dry run: %v", r)
	wantLine(t, "dry run", r.stderr, "would repair: "+depPath, "upload what its closure lacks")
	wantLine(t, "dry run", r.stderr, "would repair: "+topDoi, "write it again from the local store's realisation", "signed by the repair key")
	wantLine(t, "dry run", r.stderr, "would repair: "+dbgPath, "write its debuginfo links again", link)
	wantLine(t, "dry run", r.stderr, "cannot repair "+stray, "gc user's credentials")
	if got := string(c.Get(t, topDoi)); got != `{"id":` {
		t.Errorf("--dry-run changed %s: %s", topDoi, got)
	}

	// The writer repairs all but the deletion, which it names.
	r = lcRun(t, c.writer(), repairArgs...)
	t.Logf("repair as the writer: %v", r)
	if r.code == 0 {
		t.Errorf("repair that could not delete exited 0")
	}
	wantLine(t, "repair", r.stderr, "repaired:", "1 realisation and 1 debuginfo link written")
	wantLine(t, "repair", r.stderr, "cannot repair "+stray, "run verify --repair with the gc user's credentials")
	for k, want := range pushed {
		if got := string(c.Get(t, k)); got != want {
			t.Errorf("%s after repair:\n%s\npush wrote\n%s", k, got, want)
		}
	}
	if !c.Has(t, narinfoKey(t, depPath)) {
		t.Errorf("the dependency's narinfo was not pushed again")
	}

	// The gc user may delete: the stray realisation goes.
	r = lcRun(t, nil, append(repairArgs, "--credentials-file", c.gcCredsFile)...)
	t.Logf("repair as the gc user: %v", r)
	if r.code != 0 {
		t.Errorf("repair with delete rights: %v", r)
	}
	wantLine(t, "repair as gc", r.stderr, "repair: "+stray, "delete it")
	if c.Has(t, stray) {
		t.Errorf("%s survived", stray)
	}
	c.assertClean(t, "after repair")
}

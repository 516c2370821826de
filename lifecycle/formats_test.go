package lifecycle

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/cache/file"
	"github.com/nixpushd/nixpushd/nar"
)

// narKeyOf is the NAR key fill gives the path name.
func narKeyOf(name string) string {
	sum := sha256.Sum256([]byte("nar of " + name))
	return "nar/" + nar.NixBase32.EncodeToString(sum[:]) + ".nar"
}

func logKeyOf(drvName string) string {
	return logPrefix + strings.TrimPrefix(storePath(drvName), nar.StoreDir+"/")
}

// doiOf is a realisation of the path name, and its key.
func doiOf(name string, n int) (key, body string) {
	id := fmt.Sprintf("sha256:%064x!out", n)
	out := strings.TrimPrefix(storePath(name), nar.StoreDir+"/")
	return nar.RealisationPrefix + id + ".doi", `{"dependentRealisations":{},"id":"` + id + `","outPath":"` + out + `","signatures":[]}`
}

func linkBody(narKey string) string {
	return `{"archive":"../` + narKey + `","member":"lib/debug/.build-id/ab/x.debug"}`
}

// putAged writes key with body, last modified age ago.
func putAged(t *testing.T, dir, key, body string, age time.Duration) {
	t.Helper()
	p := filepath.Join(dir, key)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	os.Chtimes(p, when, when)
}

// gc deletes a build log once no surviving narinfo names its derivation,
// and a debug-info link once no surviving narinfo names its NAR, both
// only past the grace period; a link that does not parse stays.
func TestGCBuildLogsAndDebugInfo(t *testing.T) {
	dir := t.TempDir()
	old := 48 * time.Hour
	fill(t, dir, []fakePath{
		{name: "kept", age: time.Minute, deriver: "kept.drv"},
		{name: "doomed", age: old, deriver: "doomed.drv"},
	})
	putAged(t, dir, logKeyOf("kept.drv"), "log", old)
	putAged(t, dir, logKeyOf("doomed.drv"), "log", old)
	putAged(t, dir, logKeyOf("orphan.drv"), "log", old)
	putAged(t, dir, logKeyOf("fresh.drv"), "log", time.Minute) // its narinfo may be on the way
	putAged(t, dir, "debuginfo/aa01", linkBody(narKeyOf("kept")), old)
	putAged(t, dir, "debuginfo/aa02", linkBody(narKeyOf("doomed")), old)
	putAged(t, dir, "debuginfo/aa03", linkBody("nar/coming.nar"), time.Minute)
	putAged(t, dir, "debuginfo/aa04", "not json", old)
	keptDoi, body := doiOf("kept", 1)
	putAged(t, dir, keptDoi, body, old)
	doomedDoi, body := doiOf("doomed", 2)
	putAged(t, dir, doomedDoi, body, old)
	badDoi, _ := doiOf("bad", 3)
	putAged(t, dir, badDoi, "{", old)
	f, _ := file.New(dir)
	r := &recorder{Dir: f}
	res, err := GC(context.Background(), r, GCOptions{Keep: 24 * time.Hour, Grace: time.Hour, Locker: mustLocker(t, r), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	gone := []string{logKeyOf("doomed.drv"), logKeyOf("orphan.drv"), "debuginfo/aa02", narKeyOf("doomed"), doomedDoi}
	stay := []string{logKeyOf("kept.drv"), logKeyOf("fresh.drv"), "debuginfo/aa01", "debuginfo/aa03", "debuginfo/aa04", narKeyOf("kept"), keptDoi, badDoi}
	for _, k := range gone {
		if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
			t.Errorf("%s survived gc", k)
		}
	}
	for _, k := range stay {
		if _, err := os.Stat(filepath.Join(dir, k)); err != nil {
			t.Errorf("gc deleted %s", k)
		}
	}
	// The link goes before the NAR it names.
	var order []string
	for _, b := range r.batches {
		order = append(order, b...)
	}
	if i, j := slices.Index(order, "debuginfo/aa02"), slices.Index(order, narKeyOf("doomed")); i < 0 || j < 0 || i > j {
		t.Errorf("deletion order %v: the link must go before its NAR", order)
	}
	if res.DeletedOther < 3 {
		t.Errorf("DeletedOther = %d, want the 2 logs and the link counted", res.DeletedOther)
	}
}

// verify reports a debug-info link that names a missing NAR or does not
// parse; an orphan .ls or build log is a note.
func TestVerifyBuildLogsAndDebugInfo(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, []fakePath{{name: "a", deriver: "a.drv"}})
	putAged(t, dir, logKeyOf("a.drv"), "log", 0)
	putAged(t, dir, logKeyOf("orphan.drv"), "log", 0)
	putAged(t, dir, hashOf("nothing")+".ls", "{}", 0)
	putAged(t, dir, "debuginfo/aa01", linkBody(narKeyOf("a")), 0)
	putAged(t, dir, "debuginfo/aa02", linkBody("nar/gone.nar"), 0)
	putAged(t, dir, "debuginfo/aa03", `{"archive":1}`, 0)
	okDoi, body := doiOf("a", 1)
	putAged(t, dir, okDoi, body, 0)
	goneDoi, body := doiOf("gone", 2)
	putAged(t, dir, goneDoi, body, 0)
	badDoi, _ := doiOf("bad", 3)
	putAged(t, dir, badDoi, `{"id":"x"}`, 0)
	f, _ := file.New(dir)
	var problems, notes []string
	res, err := Verify(context.Background(), f, VerifyOptions{Note: func(n Note) { notes = append(notes, n.String()) }},
		func(p Problem) { problems = append(problems, p.String()) })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(problems)
	if len(problems) != 4 || !strings.HasPrefix(problems[0], "debuginfo/aa02: debuginfo: its NAR file nar/gone.nar is missing") ||
		!strings.HasPrefix(problems[1], "debuginfo/aa03: debuginfo: ") ||
		!strings.HasPrefix(problems[2], goneDoi+": realisation: its outPath has no narinfo") ||
		!strings.HasPrefix(problems[3], badDoi+": realisation: ") {
		t.Errorf("problems %q", problems)
	}
	wantNotes := []string{hashOf("nothing") + ".ls: " + NoteOrphanListing, logKeyOf("orphan.drv") + ": " + NoteOrphanBuildLog}
	if len(notes) != len(wantNotes) {
		t.Fatalf("notes %q, want %q", notes, wantNotes)
	}
	for i, w := range wantNotes {
		if !strings.HasPrefix(notes[i], w+": ") {
			t.Errorf("note %q, want %s", notes[i], w)
		}
	}
	if res.ByKind[ProblemDebugInfo] != 2 || res.ByKind[ProblemRealisation] != 2 {
		t.Errorf("ByKind %v", res.ByKind)
	}
}

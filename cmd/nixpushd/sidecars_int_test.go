package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nixpushd/nixpushd/internal/testenv"
)

// push's summary counts the NAR listings and debug-info links it wrote,
// and leaves them out when none were asked for.
func TestPushSummaryCountsSidecars(t *testing.T) {
	testenv.RequireNix(t)
	out, _ := testenv.BuildFormatsPath(t, strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+t.Name())

	plain := t.TempDir()
	o, err := nixpushd(t, nil, "push", "--quiet", "--to", "file://"+plain, out)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, o)
	}
	if strings.Contains(o, "listing") || strings.Contains(o, "debug-info") {
		t.Errorf("summary names listings or debug-info links without the flags:\n%s", o)
	}

	dir := t.TempDir()
	o, err = nixpushd(t, nil, "push", "--quiet", "--nar-listings", "--index-debug-info", "--to", "file://"+dir, out)
	if err != nil {
		t.Fatalf("push --nar-listings --index-debug-info: %v\n%s", err, o)
	}
	if !strings.Contains(o, ": 1 uploaded, 0 already cached, 1 NAR listing, 1 debug-info link; ") {
		t.Errorf("summary does not count the listing and the debug-info link:\n%s", o)
	}
	ls, _ := filepath.Glob(filepath.Join(dir, "*.ls"))
	if _, err := os.Stat(filepath.Join(dir, "debuginfo", "ab"+testenv.FormatsBuildID+".debug")); err != nil || len(ls) != 1 {
		t.Errorf("cache holds %d .ls and debug-info link error %v; want what the summary says", len(ls), err)
	}
}

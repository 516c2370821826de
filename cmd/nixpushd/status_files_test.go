package main

import (
	"strings"
	"testing"

	"github.com/nixpushd/nixpushd/daemon"
)

// status names the other files the daemon wrote since start, only those
// it wrote.
func TestStatusNamesFilesWritten(t *testing.T) {
	st := &daemon.Status{Target: "file:///c", Uptime: "1m", Uploaded: 4, NarListings: 4, DebugInfoLinks: 1, Realisations: 2, Skipped: map[string]int{}}
	var b strings.Builder
	printStatus(&b, st, true, "")
	if want := "since start: 4 paths uploaded, with 4 NAR listings, 1 debug-info link, 2 realisations; skipped: none\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status:\n%s\nwant the line %q", b.String(), want)
	}
	st.NarListings, st.DebugInfoLinks, st.Realisations, st.BuildLogs = 0, 0, 0, 1
	b.Reset()
	printStatus(&b, st, true, "")
	if want := "since start: 4 paths uploaded, with 1 build log; skipped: none\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status:\n%s\nwant the line %q", b.String(), want)
	}
}

package main

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/upload"
)

func TestProgressLine(t *testing.T) {
	var out bytes.Buffer
	var nar atomic.Int64
	p := newProgress(&out, true, 3, &nar)
	stop := p.run()
	nar.Store(5 << 20)
	p.event(upload.Event{Kind: upload.EventPresent})
	p.event(upload.Event{Kind: upload.EventFailed, Err: errors.New("x")})
	stop()
	s := out.String()
	if !strings.Contains(s, "[2/3 paths] 5.0 MiB NAR") || !strings.Contains(s, "1 failed") || !strings.HasSuffix(s, "\n") {
		t.Errorf("progress line %q", s)
	}
	// Not a terminal: nothing at all.
	out.Reset()
	newProgress(&out, false, 3, &nar).run()()
	if out.Len() != 0 {
		t.Errorf("drew without a terminal: %q", out.String())
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := lifecycle.HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

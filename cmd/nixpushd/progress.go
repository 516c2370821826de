package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nixpushd/nixpushd/lifecycle"
	"github.com/nixpushd/nixpushd/upload"
)

// progress draws one status line on a terminal: paths done/total, bytes,
// rate. Without a terminal it draws nothing.
type progress struct {
	w        io.Writer
	tty      bool
	total    int
	narBytes *atomic.Int64
	done     atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	start    time.Time
}

func newProgress(w io.Writer, tty bool, total int, narBytes *atomic.Int64) *progress {
	return &progress{w: w, tty: tty, total: total, narBytes: narBytes, start: time.Now()}
}

func (p *progress) event(e upload.Event) {
	p.done.Add(1)
	if e.Kind == upload.EventFailed {
		p.failed.Add(1)
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.narBytes.Load()
	rate := float64(b) / time.Since(p.start).Seconds()
	fmt.Fprintf(p.w, "\r\033[K[%d/%d paths] %s NAR, %s/s", p.done.Load(), p.total, lifecycle.HumanBytes(b), lifecycle.HumanBytes(int64(rate)))
	if f := p.failed.Load(); f > 0 {
		fmt.Fprintf(p.w, ", %d failed", f)
	}
}

// run redraws until the returned stop function is called; stop waits for
// the drawing goroutine to end.
func (p *progress) run() (stop func()) {
	if !p.tty {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				p.draw()
				fmt.Fprint(p.w, "\n")
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

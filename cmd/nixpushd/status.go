package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixpushd/nixpushd/daemon"
	"github.com/nixpushd/nixpushd/hook"
	"github.com/nixpushd/nixpushd/queue"
)

// runStatus asks the daemon over its socket; when no daemon answers, it
// reads the queue file directly (possible only while no daemon holds it).
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	socket, _ := hookDefaults()
	fs.StringVar(&socket, "socket", socket, "the daemon's socket")
	stateDir := fs.String("state-dir", defaultStateDir(), "the daemon's state directory (read when the daemon is not running)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st daemon.Status
	running := true
	reply, err := hook.Status(rctx, socket)
	if err == nil {
		if err := json.Unmarshal(reply, &st); err != nil {
			return fmt.Errorf("status: the daemon's reply is not JSON: %w", err)
		}
	} else {
		running = false
		q, qerr := queue.Open(filepath.Join(*stateDir, "queue.db"))
		if errors.Is(qerr, queue.ErrLocked) {
			return fmt.Errorf("status: a daemon holds %s but does not answer on %s: %v", *stateDir, socket, err)
		}
		if qerr != nil {
			return fmt.Errorf("status: no daemon answers on %s (%v), and its queue cannot be read: %w", socket, err, qerr)
		}
		defer q.Close()
		s, err := daemon.QueueStatus(q)
		if err != nil {
			return err
		}
		st = *s
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Running bool `json:"running"`
			daemon.Status
		}{running, st})
	}
	printStatus(stdout, &st, running)
	return nil
}

func printStatus(w io.Writer, st *daemon.Status, running bool) {
	if running {
		fmt.Fprintf(w, "nixpushd: running for %s, pushing to %s\n", st.Uptime, st.Target)
	} else {
		fmt.Fprintln(w, "nixpushd: daemon not running (showing its saved queue)")
	}
	fmt.Fprintf(w, "queue: %d pending, %d in flight, %d done, %d failed\n", st.Pending, st.InFlight, st.Done, st.Failed)
	if running {
		var sk []string
		for k, v := range st.Skipped {
			sk = append(sk, fmt.Sprintf("%d %s", v, k))
		}
		fmt.Fprintf(w, "since start: %d paths uploaded; skipped: %s\n", st.Uploaded, orNone(strings.Join(sk, ", ")))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", st.LastError)
	}
	for _, section := range []struct {
		state queue.State
		title string
	}{{queue.Failed, "failed"}, {queue.InFlight, "in flight"}, {queue.Pending, "pending"}, {queue.Done, "recently done"}} {
		first := true
		for _, it := range st.Items {
			if it.State != section.state {
				continue
			}
			if first {
				fmt.Fprintf(w, "%s:\n", section.title)
				first = false
			}
			line := "  " + it.Path
			switch it.State {
			case queue.Failed:
				line += ": " + it.LastError
			case queue.Pending:
				if it.Attempts > 0 {
					line += fmt.Sprintf(" (attempt %d, next %s: %s)", it.Attempts+1, it.NextAttempt.Local().Format(time.TimeOnly), daemon.FirstLine(it.LastError, 0))
				}
			case queue.Done:
				line += " at " + it.Updated.Local().Format(time.DateTime)
			}
			fmt.Fprintln(w, line)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

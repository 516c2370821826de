package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
	keyFile := fs.String("secret-key-file", "", "the daemon's --secret-key-file, if it has one (used, when the daemon is not running, to say which key it would sign with)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st daemon.Status
	running := true
	keyProblem := "" // not running: why no key would be used
	reply, err := hook.Status(rctx, socket)
	switch {
	case err == nil:
		if err := json.Unmarshal(reply, &st); err != nil {
			return fmt.Errorf("status: the daemon's reply is not JSON: %w", err)
		}
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("status: permission denied on %s: run as root, or add yourself to the daemon's status group (daemon --status-group GROUP; on NixOS services.nixpushd.statusGroup) and log in again", socket)
	default:
		running = false
		dbPath := filepath.Join(*stateDir, "queue.db")
		q, qerr := queue.OpenReadOnly(dbPath)
		if errors.Is(qerr, queue.ErrOldSchema) {
			// An existing queue of an older version: migrate it in place
			// (it exists, so nothing is created), as the daemon would.
			q, qerr = queue.Open(dbPath)
		}
		switch {
		case errors.Is(qerr, queue.ErrLocked):
			return fmt.Errorf("status: a daemon holds %s but does not answer on %s: %v", *stateDir, socket, err)
		case errors.Is(qerr, os.ErrNotExist):
			return fmt.Errorf("status: no daemon answers on %s (%v), and there is no queue at %s: the daemon has not run with --state-dir %s", socket, err, dbPath, *stateDir)
		case errors.Is(qerr, os.ErrPermission):
			return fmt.Errorf("status: no daemon answers on %s, and its queue %s is not readable: permission denied: run as root", socket, dbPath)
		case qerr != nil:
			return fmt.Errorf("status: no daemon answers on %s (%v), and its queue cannot be read: %w", socket, err, qerr)
		}
		defer q.Close()
		s, err := daemon.QueueStatus(q)
		if err != nil {
			return err
		}
		st = *s
		// Not the stale STATE-DIR/public-key: the key the rule picks now.
		o := targetOptions{stateDir: *stateDir, secretKeyFile: *keyFile}
		if c, err := o.resolveKey(); err != nil {
			keyProblem = err.Error()
		} else if c.Key != nil {
			st.PublicKey, st.SecretKeyFile = c.Key.Public().String(), c.File
		} else {
			st.SecretKeyFile = c.File
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Running    bool   `json:"running"`
			KeyProblem string `json:"key_problem,omitempty"`
			daemon.Status
		}{running, keyProblem, st})
	}
	printStatus(stdout, &st, running, keyProblem)
	return nil
}

// keyLine says which key signs: the live daemon's, or (clearly not
// running) the one it would use.
func keyLine(st *daemon.Status, running bool, keyProblem string) string {
	name, _, _ := strings.Cut(st.PublicKey, ":")
	switch {
	case running && st.PublicKey == "":
		return "signing: none: the daemon uploads unsigned (give it --secret-key-file)"
	case running:
		return fmt.Sprintf("signing as %s (from %s)", name, orNone(st.SecretKeyFile))
	case keyProblem != "":
		return "signing (daemon not running): it would not start: " + keyProblem
	case st.PublicKey == "":
		return fmt.Sprintf("signing (daemon not running): no key yet; it would create %s on its first start", st.SecretKeyFile)
	}
	return fmt.Sprintf("signing (daemon not running): it would sign as %s (from %s)", name, st.SecretKeyFile)
}

// filesWritten is ", with N build logs, …" for the other files the
// daemon wrote since start, "" when none.
func filesWritten(st *daemon.Status) string {
	var files []string
	for _, f := range []struct {
		n    int
		word string
	}{{st.BuildLogs, "build log"}, {st.NarListings, "NAR listing"}, {st.DebugInfoLinks, "debug-info link"}, {st.Realisations, "realisation"}} {
		if f.n > 0 {
			files = append(files, plural(f.n, f.word))
		}
	}
	if len(files) == 0 {
		return ""
	}
	return ", with " + strings.Join(files, ", ")
}

func printStatus(w io.Writer, st *daemon.Status, running bool, keyProblem string) {
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
		fmt.Fprintf(w, "since start: %s uploaded%s; skipped: %s\n", plural(st.Uploaded, "path"), filesWritten(st), orNone(strings.Join(sk, ", ")))
	}
	fmt.Fprintln(w, keyLine(st, running, keyProblem))
	if st.PublicKey != "" {
		fmt.Fprintf(w, "public key: %s\n", st.PublicKey)
	}
	if st.Degraded {
		fmt.Fprintf(w, "DEGRADED since %s: the cache cannot be used until its configuration is fixed; uploads are retried\n", sinceText(st.ErrorSince))
	}
	if st.LastError != "" {
		line := "last error"
		if st.ErrorSince != "" && !st.Degraded {
			line += " (failing since " + sinceText(st.ErrorSince) + ")"
		}
		fmt.Fprintf(w, "%s: %s\n", line, st.LastError)
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

// sinceText shows an RFC 3339 time as local time and age.
func sinceText(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format(time.DateTime), time.Since(t).Round(time.Second))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

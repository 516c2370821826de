package queue

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes this test binary as a helper process that
// writes to the queue until it is SIGKILLed.
const (
	helperDBEnv    = "NIXPUSHD_QUEUE_CRASH_DB"
	helperRoundEnv = "NIXPUSHD_QUEUE_CRASH_ROUND"
	crashBatch     = 25
)

func TestMain(m *testing.M) {
	if db := os.Getenv(helperDBEnv); db != "" {
		os.Exit(crashHelper(db, os.Getenv(helperRoundEnv)))
	}
	os.Exit(m.Run())
}

func crashPath(round string, batch, i int) string {
	return fmt.Sprintf("/nix/store/r%s-b%d-%02d-pkg", round, batch, i)
}

// crashHelper enqueues batches forever, printing "ack N" only after batch N's
// Enqueue has returned, and churns through Claim/Complete/Retry/Fail in
// between so the kill can land in any kind of transaction.
func crashHelper(db, round string) int {
	q, err := Open(db)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	if _, err := q.Requeue(time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	// Never outlive a parent that failed to kill us.
	deadline := time.Now().Add(20 * time.Second)
	for batch := 0; time.Now().Before(deadline); batch++ {
		ps := make([]string, crashBatch)
		for i := range ps {
			ps[i] = crashPath(round, batch, i)
		}
		if _, err := q.Enqueue(ps, "spool", time.Now()); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		// os.Stdout is unbuffered: the line is in the kernel when Write
		// returns, so the parent sees exactly the acknowledged batches.
		fmt.Fprintf(os.Stdout, "ack %d\n", batch)

		items, err := q.Claim(time.Now(), 15)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		for i, it := range items {
			switch i % 3 {
			case 0:
				err = q.Complete(it.Path, time.Now())
			case 1:
				err = q.Retry(it.Path, "transient", time.Now().Add(time.Millisecond), time.Now())
			default:
				err = q.Fail(it.Path, "permanent", time.Now())
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				return 2
			}
		}
		if batch%7 == 0 {
			if err := q.SetMeta("checkpoint", strconv.Itoa(batch)); err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				return 2
			}
		}
	}
	fmt.Fprintln(os.Stderr, "helper: not killed before deadline")
	return 3
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "queue.db")
	rng := rand.New(rand.NewPCG(7, 7))
	var acked []string
	rounds := 10
	for round := range rounds {
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("out%d", round)))
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperDBEnv+"="+db, helperRoundEnv+"="+strconv.Itoa(round))
		cmd.Stdout = out
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it get going, then kill it at a random moment.
		waitUntil := time.Now().Add(5 * time.Second)
		for time.Now().Before(waitUntil) {
			if fi, err := out.Stat(); err == nil && fi.Size() > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		out.Close()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: helper was not killed: %v\n%s", round, err, stderr.String())
		}

		batches := readAcks(t, out.Name())
		if batches == 0 {
			t.Fatalf("round %d: helper acknowledged nothing\n%s", round, stderr.String())
		}
		for b := range batches {
			for i := range crashBatch {
				acked = append(acked, crashPath(strconv.Itoa(round), b, i))
			}
		}

		q, err := Open(db)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		checkInvariants(t, q)
		for _, p := range acked {
			if _, ok, err := q.Get(p); err != nil || !ok {
				q.Close()
				t.Fatalf("round %d: acknowledged %s lost (err %v)", round, p, err)
			}
		}
		st, _ := q.Stats()
		if total := st.Pending + st.InFlight + st.Done + st.Failed; total < len(acked) {
			t.Fatalf("round %d: %d items, %d acknowledged", round, total, len(acked))
		}
		if _, err := q.Requeue(time.Now()); err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, q)
		t.Logf("round %d: %d batches acknowledged; %+v", round, batches, st)
		q.Close()
	}
}

// readAcks returns how many consecutive batches, from 0, the file
// acknowledges. Only newline-terminated lines count.
func readAcks(t *testing.T, name string) int {
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	lines = lines[:len(lines)-1] // "" or an unterminated fragment
	for n, line := range lines {
		if line != "ack "+strconv.Itoa(n) {
			t.Fatalf("line %d of helper output is %q", n, line)
		}
	}
	return len(lines)
}

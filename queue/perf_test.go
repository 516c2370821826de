package queue

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestLargeQueueCheapReads fills a queue with 100,000 items and times the
// reads that must not scan. It logs numbers rather than asserting them
// (machines differ); the structural guarantee is that Stats reads four
// counters and NextDue one key, and the same calls on a 1,000-item queue
// are logged alongside for comparison.
func TestLargeQueueCheapReads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100k-item queue")
	}
	q, _ := openTemp(t)
	const total, batch = 100_000, 1000
	now := t0
	var batchTimes []time.Duration
	var small struct{ stats, nextDue time.Duration }
	for b := range total / batch {
		ps := make([]string, batch)
		for i := range ps {
			ps[i] = fmt.Sprintf("/nix/store/%032d-pkg-%d", b*batch+i, b)
		}
		now = now.Add(time.Millisecond)
		start := time.Now()
		n, err := q.Enqueue(ps, "reconcile", now)
		batchTimes = append(batchTimes, time.Since(start))
		if err != nil || n != batch {
			t.Fatalf("batch %d: %d, %v", b, n, err)
		}
		if b == 0 {
			small.stats = avgTime(1000, func() { q.Stats() })
			small.nextDue = avgTime(1000, func() { q.NextDue() })
		}
	}
	// Spread some items over the backoff index so NextDue has real work.
	claimed, err := q.Claim(now, 500)
	if err != nil || len(claimed) != 500 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	for i, it := range claimed {
		if err := q.Retry(it.Path, "503", now.Add(time.Duration(i+1)*time.Second), now); err != nil {
			t.Fatal(err)
		}
	}

	st, err := q.Stats()
	if err != nil || st.Pending+st.InFlight+st.Done+st.Failed != total {
		t.Fatalf("stats %+v %v", st, err)
	}
	slices.Sort(batchTimes)
	statsT := avgTime(1000, func() { q.Stats() })
	nextDueT := avgTime(1000, func() { q.NextDue() })
	claimT := avgTime(20, func() {
		items, err := q.Claim(now, 10)
		if err != nil || len(items) != 10 {
			t.Fatalf("claim: %d %v", len(items), err)
		}
		for _, it := range items {
			q.Complete(it.Path, now)
		}
	})
	listT := avgTime(100, func() { q.List(Pending, 50) })
	t.Logf("Enqueue 1000 paths (one tx): median %v, max %v over %d batches",
		batchTimes[len(batchTimes)/2], batchTimes[len(batchTimes)-1], len(batchTimes))
	t.Logf("Stats:   %v at 1k items, %v at 100k items", small.stats, statsT)
	t.Logf("NextDue: %v at 1k items, %v at 100k items", small.nextDue, nextDueT)
	t.Logf("Claim(10)+10×Complete at 100k: %v; List(Pending, 50): %v", claimT, listT)
	checkInvariants(t, q)
}

func avgTime(n int, f func()) time.Duration {
	start := time.Now()
	for range n {
		f()
	}
	return time.Since(start) / time.Duration(n)
}

// BenchmarkEnqueueClaimComplete measures one path's whole life: enqueue,
// claim, complete, each its own fsynced transaction (as the daemon does
// when items trickle in one at a time).
func BenchmarkEnqueueClaimComplete(b *testing.B) {
	q, _ := openTemp(b)
	now := t0
	i := 0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		p := fmt.Sprintf("/nix/store/%032d-bench", i)
		i++
		if _, err := q.Enqueue([]string{p}, "hook", now); err != nil {
			b.Fatal(err)
		}
		items, err := q.Claim(now, 1)
		if err != nil || len(items) != 1 {
			b.Fatalf("claim: %v %v", items, err)
		}
		if err := q.Complete(p, now); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 0 {
			if err := q.PruneDone(100); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEnqueueBatch1000 measures the cost per 1000-path batch.
func BenchmarkEnqueueBatch1000(b *testing.B) {
	q, _ := openTemp(b)
	now := t0
	n := 0
	for b.Loop() {
		ps := make([]string, 1000)
		for i := range ps {
			ps[i] = fmt.Sprintf("/nix/store/%032d-batch", n)
			n++
		}
		now = now.Add(time.Millisecond)
		if _, err := q.Enqueue(ps, "reconcile", now); err != nil {
			b.Fatal(err)
		}
	}
}

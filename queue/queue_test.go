package queue

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOpenCreatesAndLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "queue.db")
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()

	// flock is per open file, so a second Open in this process conflicts
	// just as another process would.
	start := time.Now()
	q2, err := Open(path)
	if err == nil {
		q2.Close()
		t.Fatal("second Open of a locked queue succeeded")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("second Open took %v; it should fail fast", el)
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("error %v does not wrap ErrLocked", err)
	}
	want := "queue " + path + " is locked by another nixpushd process"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q lacks %q", err, want)
	}

	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q3, err := Open(path)
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	q3.Close()
}

func TestEnqueueCountsNewAndPersists(t *testing.T) {
	q, path := openTemp(t)
	n := mustEnqueue(t, q, at(0), sp("a"), sp("b"), sp("a"), sp("c"))
	if n != 3 {
		t.Fatalf("added = %d, want 3 (duplicate inside batch counts once)", n)
	}
	if n, err := q.Enqueue(nil, "watch", at(1)); n != 0 || err != nil {
		t.Fatalf("empty batch: %d, %v", n, err)
	}
	it := mustGet(t, q, sp("b"))
	want := Item{Path: sp("b"), State: Pending, Source: "watch", Enqueued: at(0), Updated: at(0)}
	if !itemEqual(it, want) {
		t.Fatalf("got %+v\nwant %+v", it, want)
	}
	q.Close()

	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st, _ := q.Stats()
	if st != (Stats{Pending: 3}) {
		t.Fatalf("after reopen: %+v", st)
	}
	checkInvariants(t, q)
}

func TestEnqueueRejectsInvalidBatchWhole(t *testing.T) {
	q, _ := openTemp(t)
	for _, bad := range []string{"", "/nix/store/" + strings.Repeat("x", MaxPathLen)} {
		n, err := q.Enqueue([]string{sp("ok"), bad}, "hook", at(0))
		if err == nil || n != 0 {
			t.Fatalf("bad path %.20q: n=%d err=%v", bad, n, err)
		}
	}
	if _, ok, _ := q.Get(sp("ok")); ok {
		t.Fatal("valid path of a rejected batch was written")
	}
}

// TestCoalescing covers Enqueue of a path that is already in every state.
func TestCoalescing(t *testing.T) {
	p := sp("x")
	tests := []struct {
		name      string
		setup     func(t *testing.T, q *Queue) // leaves p in some state
		wantAdded int
		check     func(t *testing.T, before, after Item)
	}{
		{
			name:      "pending twice",
			setup:     func(t *testing.T, q *Queue) { mustEnqueue(t, q, at(0), p) },
			wantAdded: 0,
			check: func(t *testing.T, before, after Item) {
				if !itemEqual(before, after) {
					t.Fatalf("changed: %+v -> %+v", before, after)
				}
			},
		},
		{
			name: "pending in backoff keeps its NextAttempt",
			setup: func(t *testing.T, q *Queue) {
				mustEnqueue(t, q, at(0), p)
				q.Claim(at(1), 1)
				if err := q.Retry(p, "503", at(100), at(2)); err != nil {
					t.Fatal(err)
				}
			},
			wantAdded: 0,
			check: func(t *testing.T, before, after Item) {
				if !itemEqual(before, after) || !after.NextAttempt.Equal(at(100)) || after.Attempts != 1 {
					t.Fatalf("changed: %+v -> %+v", before, after)
				}
			},
		},
		{
			name: "inflight",
			setup: func(t *testing.T, q *Queue) {
				mustEnqueue(t, q, at(0), p)
				q.Claim(at(1), 1)
			},
			wantAdded: 0,
			check: func(t *testing.T, before, after Item) {
				if after.State != InFlight || !itemEqual(before, after) {
					t.Fatalf("changed: %+v -> %+v", before, after)
				}
			},
		},
		{
			name: "done goes back to pending",
			setup: func(t *testing.T, q *Queue) {
				mustEnqueue(t, q, at(0), p)
				q.Claim(at(1), 1)
				q.Retry(p, "timeout", time.Time{}, at(2))
				q.Claim(at(3), 1)
				if err := q.Complete(p, at(4)); err != nil {
					t.Fatal(err)
				}
			},
			wantAdded: 1,
			check: func(t *testing.T, before, after Item) {
				want := Item{Path: p, State: Pending, Source: "spool", Enqueued: at(10), Updated: at(10)}
				if !itemEqual(after, want) {
					t.Fatalf("got %+v\nwant %+v", after, want)
				}
			},
		},
		{
			name: "failed goes back to pending with attempts reset",
			setup: func(t *testing.T, q *Queue) {
				mustEnqueue(t, q, at(0), p)
				q.Claim(at(1), 1)
				if err := q.Fail(p, "path is invalid", at(2)); err != nil {
					t.Fatal(err)
				}
			},
			wantAdded: 1,
			check: func(t *testing.T, before, after Item) {
				if before.Attempts != 1 || before.LastError == "" {
					t.Fatalf("setup: %+v", before)
				}
				want := Item{Path: p, State: Pending, Source: "spool", Enqueued: at(10), Updated: at(10)}
				if !itemEqual(after, want) {
					t.Fatalf("got %+v\nwant %+v", after, want)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := openTemp(t)
			tc.setup(t, q)
			before := mustGet(t, q, p)
			n, err := q.Enqueue([]string{p, sp("other")}, "spool", at(10))
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.wantAdded+1 {
				t.Fatalf("added = %d, want %d", n, tc.wantAdded+1)
			}
			tc.check(t, before, mustGet(t, q, p))
			checkInvariants(t, q)
		})
	}
}

// TestTransitions tries Complete, Retry and Fail from every state.
func TestTransitions(t *testing.T) {
	p := sp("x")
	// into puts p into the given state.
	into := func(t *testing.T, q *Queue, s State) {
		mustEnqueue(t, q, at(0), p)
		if s == Pending {
			return
		}
		if _, err := q.Claim(at(1), 1); err != nil {
			t.Fatal(err)
		}
		switch s {
		case Done:
			q.Complete(p, at(2))
		case Failed:
			q.Fail(p, "first reason", at(2))
		}
		if got := mustGet(t, q, p).State; got != s {
			t.Fatalf("setup: state %s, want %s", got, s)
		}
	}
	type op struct {
		name string
		do   func(q *Queue) error
		// result state per start state; "" means ErrWrongState
		to map[State]State
	}
	ops := []op{
		{"complete", func(q *Queue) error { return q.Complete(p, at(5)) },
			map[State]State{InFlight: Done}},
		{"retry", func(q *Queue) error { return q.Retry(p, "conn reset", at(60), at(5)) },
			map[State]State{InFlight: Pending}},
		{"fail", func(q *Queue) error { return q.Fail(p, "nar too big", at(5)) },
			map[State]State{Pending: Failed, InFlight: Failed, Failed: Failed}},
	}
	for _, o := range ops {
		for _, from := range States {
			t.Run(o.name+"/from_"+string(from), func(t *testing.T) {
				q, _ := openTemp(t)
				into(t, q, from)
				before := mustGet(t, q, p)
				err := o.do(q)
				after := mustGet(t, q, p)
				to, allowed := o.to[from]
				if !allowed {
					if !errors.Is(err, ErrWrongState) {
						t.Fatalf("err = %v, want ErrWrongState", err)
					}
					if !itemEqual(before, after) {
						t.Fatalf("refused op changed item: %+v -> %+v", before, after)
					}
					checkInvariants(t, q)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if after.State != to || !after.Updated.Equal(at(5)) || !after.Enqueued.Equal(at(0)) {
					t.Fatalf("after: %+v", after)
				}
				switch o.name {
				case "complete":
					if after.LastError != "" || !after.NextAttempt.IsZero() {
						t.Fatalf("done item keeps retry data: %+v", after)
					}
				case "retry":
					if after.Attempts != before.Attempts+1 || after.LastError != "conn reset" || !after.NextAttempt.Equal(at(60)) {
						t.Fatalf("retry: %+v", after)
					}
				case "fail":
					wantAttempts := before.Attempts
					if from == InFlight {
						wantAttempts++
					}
					if after.LastError != "nar too big" || after.Attempts != wantAttempts {
						t.Fatalf("fail: %+v", after)
					}
				}
				checkInvariants(t, q)
			})
		}
	}

	t.Run("missing path", func(t *testing.T) {
		q, _ := openTemp(t)
		for name, err := range map[string]error{
			"complete": q.Complete(p, at(1)),
			"retry":    q.Retry(p, "x", at(1), at(1)),
			"fail":     q.Fail(p, "x", at(1)),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestClaimOrderAndMax(t *testing.T) {
	q, _ := openTemp(t)
	// Enqueued order differs from path order; c and a share a time.
	mustEnqueue(t, q, at(3), sp("d"))
	mustEnqueue(t, q, at(1), sp("c"), sp("a"))
	mustEnqueue(t, q, at(2), sp("b"))
	mustEnqueue(t, q, at(0), sp("e"))

	got, err := q.Claim(at(10), 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{sp("e"), sp("a")}; !slices.Equal(paths(got), want) {
		t.Fatalf("first claim %v, want %v", paths(got), want)
	}
	for _, it := range got {
		if it.State != InFlight || !it.Updated.Equal(at(10)) {
			t.Fatalf("claimed item %+v", it)
		}
	}
	got, _ = q.Claim(at(10), 10)
	if want := []string{sp("c"), sp("b"), sp("d")}; !slices.Equal(paths(got), want) {
		t.Fatalf("second claim %v, want %v", paths(got), want)
	}
	if got, _ := q.Claim(at(10), 10); len(got) != 0 {
		t.Fatalf("claim on empty queue: %v", paths(got))
	}
	if got, _ := q.Claim(at(10), 0); got != nil {
		t.Fatal("max 0 claimed something")
	}
	checkInvariants(t, q)
}

func TestClaimRespectsNextAttempt(t *testing.T) {
	q, _ := openTemp(t)
	mustEnqueue(t, q, at(0), sp("old"), sp("young"))
	q.Claim(at(1), 2)
	// "old" was enqueued first but is backing off until 100; "young" until 50.
	q.Retry(sp("old"), "e", at(100), at(2))
	q.Retry(sp("young"), "e", at(50), at(2))
	mustEnqueue(t, q, at(3), sp("new"))

	if d, ok, _ := q.NextDue(); !ok || !d.IsZero() {
		t.Fatalf("NextDue = %v %v, want zero (new item due at once)", d, ok)
	}
	got, _ := q.Claim(at(10), 10)
	if !slices.Equal(paths(got), []string{sp("new")}) {
		t.Fatalf("claim at 10: %v", paths(got))
	}
	if d, ok, _ := q.NextDue(); !ok || !d.Equal(at(50)) {
		t.Fatalf("NextDue = %v %v, want %v", d, ok, at(50))
	}
	if got, _ := q.Claim(at(49), 10); len(got) != 0 {
		t.Fatalf("claim at 49: %v", paths(got))
	}
	got, _ = q.Claim(at(50), 10)
	if !slices.Equal(paths(got), []string{sp("young")}) {
		t.Fatalf("claim at 50: %v", paths(got))
	}
	// Both due at 200: order by Enqueued again, not by NextAttempt.
	q.Retry(sp("young"), "e", at(60), at(51))
	got, _ = q.Claim(at(200), 10)
	if !slices.Equal(paths(got), []string{sp("old"), sp("young")}) {
		t.Fatalf("claim at 200: %v", paths(got))
	}
	if _, ok, _ := q.NextDue(); ok {
		t.Fatal("NextDue reports an item with nothing pending")
	}
	checkInvariants(t, q)
}

// TestClaimClockBackwards: an item that one Claim saw as due is not handed
// out by a later Claim whose clock reads earlier than its NextAttempt.
func TestClaimClockBackwards(t *testing.T) {
	q, _ := openTemp(t)
	mustEnqueue(t, q, at(0), sp("b"))
	mustEnqueue(t, q, at(3), sp("a"))
	q.Claim(at(4), 2)
	q.Retry(sp("a"), "e", at(90), at(5))
	q.Retry(sp("b"), "e", time.Time{}, at(5))
	// Sees both due; hands out only the older b, leaving a promoted.
	got, _ := q.Claim(at(95), 1)
	if !slices.Equal(paths(got), []string{sp("b")}) {
		t.Fatalf("claim at 95: %v", paths(got))
	}
	checkInvariants(t, q)
	if got, _ := q.Claim(at(80), 5); len(got) != 0 {
		t.Fatalf("claim at 80 (clock went back): %v", paths(got))
	}
	got, _ = q.Claim(at(90), 5)
	if !slices.Equal(paths(got), []string{sp("a")}) {
		t.Fatalf("claim at 90: %v", paths(got))
	}
	checkInvariants(t, q)
}

func TestRequeueAfterCrash(t *testing.T) {
	q, path := openTemp(t)
	mustEnqueue(t, q, at(0), sp("a"), sp("b"), sp("c"))
	claimed, _ := q.Claim(at(1), 2)
	if len(claimed) != 2 {
		t.Fatal(claimed)
	}
	// Crash: close without completing (the process dying releases the
	// lock the same way; the real SIGKILL case is TestCrashDurability).
	q.Close()

	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st, _ := q.Stats(); st != (Stats{Pending: 1, InFlight: 2}) {
		t.Fatalf("stats after reopen: %+v", st)
	}
	n, err := q.Requeue(at(5))
	if err != nil || n != 2 {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	if st, _ := q.Stats(); st != (Stats{Pending: 3}) {
		t.Fatalf("stats after requeue: %+v", st)
	}
	for _, it := range claimed {
		got := mustGet(t, q, it.Path)
		if got.State != Pending || got.Attempts != 0 || !got.Updated.Equal(at(5)) || !got.Enqueued.Equal(at(0)) {
			t.Fatalf("requeued %+v", got)
		}
	}
	got, _ := q.Claim(at(6), 10)
	if !slices.Equal(paths(got), []string{sp("a"), sp("b"), sp("c")}) {
		t.Fatalf("claim after requeue: %v", paths(got))
	}
	if n, _ := q.Requeue(at(7)); n != 3 {
		t.Fatalf("second Requeue = %d", n)
	}
	checkInvariants(t, q)
}

func TestListOrder(t *testing.T) {
	q, _ := openTemp(t)
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		mustEnqueue(t, q, at(i), sp(name))
	}
	q.Claim(at(10), 5)
	q.Complete(sp("b"), at(20))
	q.Complete(sp("d"), at(22))
	q.Complete(sp("a"), at(21))
	q.Fail(sp("c"), "x", at(23))
	q.Fail(sp("e"), "y", at(23)) // same Updated: path descending
	if l, _ := q.List(Done, 0); !slices.Equal(paths(l), []string{sp("d"), sp("a"), sp("b")}) {
		t.Fatalf("done: %v", paths(l))
	}
	if l, _ := q.List(Done, 2); !slices.Equal(paths(l), []string{sp("d"), sp("a")}) {
		t.Fatalf("done limit 2: %v", paths(l))
	}
	if l, _ := q.List(Failed, 0); !slices.Equal(paths(l), []string{sp("e"), sp("c")}) {
		t.Fatalf("failed: %v", paths(l))
	}
	mustEnqueue(t, q, at(30), sp("z"))
	mustEnqueue(t, q, at(29), sp("y")) // y is older though enqueued later
	if l, _ := q.List(Pending, 0); !slices.Equal(paths(l), []string{sp("y"), sp("z")}) {
		t.Fatalf("pending: %v", paths(l))
	}
	if _, err := q.List("bogus", 0); err == nil {
		t.Fatal("List of unknown state succeeded")
	}
}

func TestPruneDone(t *testing.T) {
	q, _ := openTemp(t)
	var names []string
	for i := range 10 {
		names = append(names, sp(string(rune('a'+i))))
	}
	mustEnqueue(t, q, at(0), names...)
	q.Claim(at(1), 10)
	for i, p := range names {
		if i == 9 {
			q.Fail(p, "permanent", at(100))
			continue
		}
		q.Complete(p, at(10+i))
	}
	if err := q.PruneDone(20); err != nil {
		t.Fatal(err)
	}
	if st, _ := q.Stats(); st.Done != 9 {
		t.Fatalf("prune above count removed items: %+v", st)
	}
	if err := q.PruneDone(3); err != nil {
		t.Fatal(err)
	}
	l, _ := q.List(Done, 0)
	if want := []string{names[8], names[7], names[6]}; !slices.Equal(paths(l), want) {
		t.Fatalf("kept %v, want %v", paths(l), want)
	}
	if _, ok, _ := q.Get(names[0]); ok {
		t.Fatal("pruned item still readable")
	}
	if st, _ := q.Stats(); st != (Stats{Done: 3, Failed: 1}) {
		t.Fatalf("stats: %+v", st)
	}
	if err := q.PruneDone(-1); err != nil {
		t.Fatal(err)
	}
	if st, _ := q.Stats(); st != (Stats{Failed: 1}) {
		t.Fatalf("stats after prune to 0: %+v", st)
	}
	// A pruned path is simply new again.
	if n := mustEnqueue(t, q, at(200), names[0]); n != 1 {
		t.Fatal("re-enqueue of pruned path not counted")
	}
	checkInvariants(t, q)
}

func TestMeta(t *testing.T) {
	q, path := openTemp(t)
	if _, ok, err := q.Meta("reconcile"); ok || err != nil {
		t.Fatalf("unset key: %v %v", ok, err)
	}
	if err := q.SetMeta("", "x"); err == nil {
		t.Fatal("empty key accepted")
	}
	if err := q.SetMeta("reconcile", "42"); err != nil {
		t.Fatal(err)
	}
	if err := q.SetMeta("empty", ""); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if v, ok, _ := q.Meta("reconcile"); !ok || v != "42" {
		t.Fatalf("after reopen: %q %v", v, ok)
	}
	if v, ok, _ := q.Meta("empty"); !ok || v != "" {
		t.Fatalf("empty value: %q %v", v, ok)
	}
	// Meta keys never show up as items or counters.
	if st, _ := q.Stats(); st != (Stats{}) {
		t.Fatalf("stats: %+v", st)
	}
	checkInvariants(t, q)
}

func TestGetMissing(t *testing.T) {
	q, _ := openTemp(t)
	if _, ok, err := q.Get(sp("nope")); ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
}

// TestTimesNormalised: monotonic readings and zones are dropped, so items
// read back compare equal to what a caller computed from time.Now.
func TestTimesNormalised(t *testing.T) {
	q, _ := openTemp(t)
	now := time.Now().In(time.FixedZone("X", 3600))
	mustEnqueue(t, q, now, sp("a"))
	got, _ := q.Claim(now, 1)
	it := mustGet(t, q, sp("a"))
	if !it.Enqueued.Equal(now) || it.Enqueued != got[0].Enqueued || it.Enqueued.Location() != time.UTC {
		t.Fatalf("enqueued %v (claim said %v), want %v in UTC", it.Enqueued, got[0].Enqueued, now)
	}
}

func itemEqual(a, b Item) bool {
	return a.Path == b.Path && a.State == b.State && a.Source == b.Source &&
		a.Attempts == b.Attempts && a.LastError == b.LastError &&
		a.NextAttempt.Equal(b.NextAttempt) && a.Enqueued.Equal(b.Enqueued) && a.Updated.Equal(b.Updated)
}

// CompleteAll finishes a batch in one transaction, or none of it when one
// item is not in flight.
func TestCompleteAll(t *testing.T) {
	q, _ := openTemp(t)
	a, b, c := sp("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"), sp("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b"), sp("cccccccccccccccccccccccccccccccc-c")
	mustEnqueue(t, q, at(0), a, b, c)
	if _, err := q.Claim(at(1), 2); err != nil {
		t.Fatal(err)
	}
	if err := q.CompleteAll([]string{a, b, c}, at(2)); err == nil {
		t.Fatal("CompleteAll accepted an item that is not in flight")
	}
	if mustGet(t, q, a).State != InFlight {
		t.Fatal("a failed CompleteAll changed an item")
	}
	if err := q.CompleteAll([]string{a, b}, at(2)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b} {
		if it := mustGet(t, q, p); it.State != Done || !it.Updated.Equal(at(2)) {
			t.Errorf("%s: %+v", p, it)
		}
	}
	if st, _ := q.Stats(); st.Done != 2 || st.Pending != 1 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
	checkInvariants(t, q)
}

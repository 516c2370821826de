package queue

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// model is the queue's specification as a plain map; the property test runs
// the same random operations on both and compares after every step.
type model struct {
	items map[string]Item
}

func (m *model) enqueue(ps []string, src string, now time.Time) int {
	n := 0
	for _, p := range ps {
		if old, ok := m.items[p]; ok && (old.State == Pending || old.State == InFlight) {
			continue
		}
		m.items[p] = Item{Path: p, State: Pending, Source: src, Enqueued: now, Updated: now}
		n++
	}
	return n
}

func (m *model) claim(now time.Time, max int) []string {
	var due []Item
	for _, it := range m.items {
		if it.State == Pending && timeKey(it.NextAttempt) <= timeKey(now) {
			due = append(due, it)
		}
	}
	slices.SortFunc(due, oldestFirst)
	var out []string
	for _, it := range due[:min(max, len(due))] {
		it.State, it.Updated = InFlight, now
		m.items[it.Path] = it
		out = append(out, it.Path)
	}
	return out
}

// step applies a transition allowed from the states in from; it returns
// the error kind the queue should give.
func (m *model) step(p string, from []State, fn func(*Item)) error {
	it, ok := m.items[p]
	if !ok {
		return ErrNotFound
	}
	if !slices.Contains(from, it.State) {
		return ErrWrongState
	}
	fn(&it)
	m.items[p] = it
	return nil
}

func (m *model) list(s State) []Item {
	var out []Item
	for _, it := range m.items {
		if it.State == s {
			out = append(out, it)
		}
	}
	if s == Done || s == Failed {
		slices.SortFunc(out, newestFirst)
	} else {
		slices.SortFunc(out, oldestFirst)
	}
	return out
}

func (m *model) stats() Stats {
	return Stats{len(m.list(Pending)), len(m.list(InFlight)), len(m.list(Done)), len(m.list(Failed))}
}

func oldestFirst(a, b Item) int {
	return cmp.Or(cmp.Compare(timeKey(a.Enqueued), timeKey(b.Enqueued)), cmp.Compare(a.Path, b.Path))
}

func newestFirst(a, b Item) int {
	return -cmp.Or(cmp.Compare(timeKey(a.Updated), timeKey(b.Updated)), cmp.Compare(a.Path, b.Path))
}

func TestQueueMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	q, dbPath := openTemp(t)
	m := &model{items: map[string]Item{}}
	universe := make([]string, 14)
	for i := range universe {
		universe[i] = sp(fmt.Sprintf("%02d-pkg", i))
	}
	pick := func() string { return universe[rng.IntN(len(universe))] }
	now := t0
	ops := 1500
	if testing.Short() {
		ops = 300
	}
	for step := range ops {
		// Equal timestamps are common on purpose: they exercise the
		// path tie-breaks.
		now = now.Add(time.Duration(rng.IntN(3)) * time.Second)
		var desc string
		var gotErr, wantErr error
		switch r := rng.IntN(100); {
		case r < 20:
			ps := make([]string, 1+rng.IntN(4))
			for i := range ps {
				ps[i] = pick()
			}
			src := []string{"watch", "hook", "spool"}[rng.IntN(3)]
			desc = fmt.Sprintf("Enqueue(%v)", ps)
			n, err := q.Enqueue(ps, src, now)
			gotErr = err
			if want := m.enqueue(ps, src, now); err == nil && n != want {
				t.Fatalf("step %d %s: added %d, model %d", step, desc, n, want)
			}
		case r < 45:
			// The claim clock wanders either side of now, so items one
			// Claim saw as due meet a later Claim whose clock reads earlier.
			cnow := now.Add(time.Duration(rng.IntN(14)-10) * time.Second)
			max := 1 + rng.IntN(3)
			if rng.IntN(4) == 0 {
				cnow = now.Add(time.Duration(rng.IntN(30)) * time.Second)
				max = rng.IntN(2) // 0: no-op, 1: promote many, claim one
			}
			desc = fmt.Sprintf("Claim(%v, %d)", cnow.Sub(t0), max)
			got, err := q.Claim(cnow, max)
			gotErr = err
			want := m.claim(norm(cnow), max)
			if err == nil && !slices.Equal(paths(got), want) {
				t.Fatalf("step %d %s: got %v, model %v", step, desc, paths(got), want)
			}
		case r < 55:
			p := pick()
			desc = "Complete(" + p + ")"
			gotErr = q.Complete(p, now)
			wantErr = m.step(p, []State{InFlight}, func(it *Item) {
				it.State, it.LastError, it.NextAttempt, it.Updated = Done, "", time.Time{}, now
			})
		case r < 80:
			p := pick()
			var next time.Time
			if rng.IntN(4) > 0 {
				next = now.Add(time.Duration(rng.IntN(25)-5) * time.Second)
			}
			cause := fmt.Sprintf("err%d", step)
			desc = fmt.Sprintf("Retry(%s, %v)", p, next)
			gotErr = q.Retry(p, cause, next, now)
			wantErr = m.step(p, []State{InFlight}, func(it *Item) {
				it.State, it.LastError, it.NextAttempt, it.Updated = Pending, cause, next, now
				it.Attempts++
			})
		case r < 88:
			p := pick()
			reason := fmt.Sprintf("fatal%d", step)
			desc = "Fail(" + p + ")"
			gotErr = q.Fail(p, reason, now)
			wantErr = m.step(p, []State{Pending, InFlight, Failed}, func(it *Item) {
				if it.State == InFlight {
					it.Attempts++
				}
				it.State, it.LastError, it.NextAttempt, it.Updated = Failed, reason, time.Time{}, now
			})
		case r < 92:
			desc = "Requeue"
			n, err := q.Requeue(now)
			gotErr = err
			want := 0
			for p, it := range m.items {
				if it.State == InFlight {
					it.State, it.Updated = Pending, now
					m.items[p] = it
					want++
				}
			}
			if err == nil && n != want {
				t.Fatalf("step %d Requeue: %d, model %d", step, n, want)
			}
		case r < 96:
			keep := rng.IntN(4)
			desc = fmt.Sprintf("PruneDone(%d)", keep)
			gotErr = q.PruneDone(keep)
			done := m.list(Done)
			for _, it := range done[min(keep, len(done)):] {
				delete(m.items, it.Path)
			}
		default:
			desc = "reopen"
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			var err error
			if q, err = Open(dbPath); err != nil {
				t.Fatal(err)
			}
		}
		if !errors.Is(gotErr, wantErr) || (wantErr == nil && gotErr != nil) {
			t.Fatalf("step %d %s: err %v, model %v", step, desc, gotErr, wantErr)
		}
		st, err := q.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st != m.stats() {
			t.Fatalf("step %d %s: stats %+v, model %+v", step, desc, st, m.stats())
		}
		if step%10 == 0 || step == ops-1 {
			compareFull(t, q, m, fmt.Sprintf("step %d %s", step, desc))
		}
	}
	q.Close()
}

// compareFull checks List for every state, NextDue, and all indexes.
func compareFull(t *testing.T, q *Queue, m *model, where string) {
	t.Helper()
	for _, s := range States {
		got, err := q.List(s, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := m.list(s)
		if len(got) != len(want) {
			t.Fatalf("%s: List(%s) has %d, model %d", where, s, len(got), len(want))
		}
		for i := range got {
			if !itemEqual(got[i], want[i]) {
				t.Fatalf("%s: List(%s)[%d]\n got %+v\nwant %+v", where, s, i, got[i], want[i])
			}
		}
		st, _ := q.Stats()
		if n := map[State]int{Pending: st.Pending, InFlight: st.InFlight, Done: st.Done, Failed: st.Failed}[s]; n != len(got) {
			t.Fatalf("%s: Stats says %d %s, List has %d", where, n, s, len(got))
		}
	}
	var wantDue time.Time
	wantOK := false
	for _, it := range m.items {
		if it.State == Pending && (!wantOK || timeKey(it.NextAttempt) < timeKey(wantDue)) {
			wantDue, wantOK = it.NextAttempt, true
		}
	}
	due, ok, err := q.NextDue()
	if err != nil || ok != wantOK || timeKey(due) != timeKey(wantDue) {
		t.Fatalf("%s: NextDue = %v %v %v, model %v %v", where, due, ok, err, wantDue, wantOK)
	}
	checkInvariants(t, q)
}

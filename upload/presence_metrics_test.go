package upload

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nixpushd/nixpushd/cache"
	"github.com/nixpushd/nixpushd/cache/sema"
	"github.com/nixpushd/nixpushd/internal/cachetest"
	"golang.org/x/sync/semaphore"
)

func TestPresenceStatsCountsChecksAndHits(t *testing.T) {
	ctx := context.Background()
	m := cachetest.NewMem()
	m.Objects["a.narinfo"] = []byte("x")
	pt := sema.Wrap(m, semaphore.NewWeighted(4))
	p := NewPresence(pt, time.Minute)

	steps := []struct {
		name string
		do   func() error
		want PresenceStats
	}{
		{"first check asks the cache", func() error {
			_, err := p.Recent(ctx, "a.narinfo")
			return err
		}, PresenceStats{Checks: 1, Requests: 1}},
		{"second check is remembered", func() error {
			_, err := p.Recent(ctx, "a.narinfo")
			return err
		}, PresenceStats{Checks: 2, Hits: 1, Requests: 1}},
		{"a stricter bound asks again", func() error {
			_, err := p.Check(ctx, "a.narinfo", time.Now())
			return err
		}, PresenceStats{Checks: 3, Hits: 1, Requests: 2}},
		{"a mark answers without a request", func() error {
			p.Mark("b.narinfo", true)
			_, err := p.Recent(ctx, "b.narinfo")
			return err
		}, PresenceStats{Checks: 4, Hits: 2, Requests: 2}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := p.Stats(); got != s.want {
			t.Fatalf("%s: stats %+v, want %+v", s.name, got, s.want)
		}
	}
}

func TestPresenceStatsCountsListings(t *testing.T) {
	ctx := context.Background()
	m := cachetest.NewMem()
	var keys []string
	for i := range 32 {
		k := fmt.Sprintf("%02d.narinfo", i)
		keys = append(keys, k)
		if i%2 == 0 {
			m.Objects[k] = []byte("x")
		}
	}
	pt := sema.Wrap(m, semaphore.NewWeighted(4))
	p := NewPresence(pt, time.Minute)
	if ok, err := p.Prime(ctx, pt.(cache.RootLister), keys); err != nil || !ok {
		t.Fatalf("Prime: %v %v", ok, err)
	}
	if got, want := p.Stats(), (PresenceStats{Requests: 1, Listings: 1}); got != want {
		t.Fatalf("after Prime: %+v, want %+v", got, want)
	}
	// A bound after the prime: CheckMany lists again rather than checking
	// 32 keys one by one.
	got, err := p.CheckMany(ctx, keys, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range got {
		if ok != (i%2 == 0) {
			t.Fatalf("key %s: present %v", keys[i], ok)
		}
	}
	if got, want := p.Stats(), (PresenceStats{Checks: 32, Requests: 2, Listings: 2}); got != want {
		t.Fatalf("after CheckMany: %+v, want %+v", got, want)
	}
}

// A second asker joining a request in flight shares its answer: one
// request, two checks, one shared.
func TestPresenceStatsCountsSharedRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := cachetest.NewMem()
		release := make(chan struct{})
		m.ExistsHook = func(string) { <-release }
		pt := sema.Wrap(m, semaphore.NewWeighted(4))
		p := NewPresence(pt, time.Minute)
		done := make(chan error, 2)
		ask := func() {
			_, err := p.Check(ctx, "a.narinfo", time.Time{})
			done <- err
		}
		go ask()
		synctest.Wait() // the first request is in flight
		go ask()
		synctest.Wait() // the second asker waits for it
		if s := p.Stats(); s.Shared != 0 || s.Checks != 2 {
			t.Fatalf("before the answer: %+v", s)
		}
		close(release)
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if got, want := p.Stats(), (PresenceStats{Checks: 2, Shared: 1, Requests: 1}); got != want {
			t.Fatalf("stats %+v, want %+v", got, want)
		}
	})
}

func TestPusherPresenceStats(t *testing.T) {
	p := &Pusher{Target: cachetest.NewMem()}
	if got := p.PresenceStats(); got != (PresenceStats{}) {
		t.Fatalf("fresh pusher: %+v", got)
	}
	if _, err := p.presence.Recent(context.Background(), "x.narinfo"); err != nil {
		t.Fatal(err)
	}
	if got := p.PresenceStats(); got.Checks != 1 || got.Requests != 1 {
		t.Fatalf("after one check: %+v", got)
	}
}

// The last listing answers for the keys it lacks as well as those it
// has, while it meets a question's bound. Once the existence requests
// sent since cost what a listing does, the next question lists instead
// (rent or buy). A Reset forgets the listing; so does its age.
func TestPresenceListingAnswersAbsentKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := cachetest.NewMem()
		var keys []string
		for i := range 100 {
			k := fmt.Sprintf("p%03d.narinfo", i)
			keys = append(keys, k)
			m.Objects[k] = []byte("x")
		}
		heads := func() (n int) {
			for _, c := range m.Checks {
				n += c
			}
			return n
		}
		pt := sema.Wrap(m, semaphore.NewWeighted(4))
		p := NewPresence(pt, time.Minute)
		if ok, err := p.Prime(ctx, pt.(cache.RootLister), keys[:20]); err != nil || !ok {
			t.Fatalf("Prime: %v %v", ok, err)
		}
		for i := range 50 {
			if ok, err := p.Recent(ctx, fmt.Sprintf("n%03d.narinfo", i)); ok || err != nil {
				t.Fatalf("absent key: %v %v", ok, err)
			}
		}
		if ok, err := p.Recent(ctx, keys[70]); !ok || err != nil {
			t.Fatalf("a present key the prime did not ask about: %v %v", ok, err)
		}
		if heads() != 0 || m.Lists != 1 {
			t.Fatalf("%d requests and %d listings for keys the listing answers, want 0 and 1", heads(), m.Lists)
		}
		if !p.Answered("n999.narinfo") || p.Answered("nar/x.nar.xz") {
			t.Error("Answered: want the listing to answer for every top-level key, and for no NAR key")
		}
		if _, err := p.Recent(ctx, "nar/x.nar.xz"); err != nil || heads() != 1 {
			t.Fatalf("a NAR key, which a top-level listing does not hold, must be asked: %d requests, %v", heads(), err)
		}

		// Questions bound after the listing: 9 are asked one by one, the
		// 10th lists (10 requests = 100 listed objects), and the listing
		// answers the next ones.
		time.Sleep(time.Second)
		now := time.Now()
		for i := range 9 {
			if ok, err := p.Check(ctx, keys[i], now); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
		if heads() != 10 || m.Lists != 1 {
			t.Fatalf("%d requests, %d listings before the threshold, want 10 and 1", heads(), m.Lists)
		}
		time.Sleep(time.Millisecond)
		delete(m.Objects, keys[50]) // as another machine's gc would
		for i := 50; i < 60; i++ {
			ok, err := p.Check(ctx, keys[i], now)
			if err != nil || ok != (i != 50) {
				t.Fatalf("%s: %v %v", keys[i], ok, err)
			}
		}
		if heads() != 10 || m.Lists != 2 {
			t.Fatalf("%d requests, %d listings after the threshold, want 10 and 2", heads(), m.Lists)
		}

		p.Reset()
		if ok, err := p.Recent(ctx, "n000.narinfo"); ok || err != nil || heads() != 11 {
			t.Fatalf("after Reset: %v %v, %d requests, want the key asked again", ok, err, heads())
		}
		// An hour on, the listing is older than any question accepts.
		p2t := sema.Wrap(m, semaphore.NewWeighted(4))
		p2 := NewPresence(p2t, time.Minute)
		p2.Prime(ctx, p2t.(cache.RootLister), keys[:20])
		time.Sleep(time.Hour)
		if _, err := p2.Recent(ctx, "n001.narinfo"); err != nil || heads() != 12 {
			t.Fatalf("an expired listing answered: %d requests, %v", heads(), err)
		}
	})
}

// A Presence that never primed (a daemon's first batches are small) does
// not know the cache's size: once the existence requests it sent cost a
// listing page, it lists with a budget of what they cost. A small cache
// is listed whole and answers later questions; a larger one is given up
// at the budget and tried again once the requests have doubled.
func TestPresenceListsCacheOfUnknownSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objects int
		// questions before the listing that completes, and the
		// listings tried by then (the last one completing)
		asked, lists int
	}{
		{"small cache", 5, listPage / listPerCheck, 1},
		// Tried at the 100th question (budget 1,000 objects), after
		// 199 more (2,000), after 399 more (4,000: complete).
		{"larger than a page", 2500, 100 + 199 + 399, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				m := cachetest.NewMem()
				for i := range tc.objects {
					m.Objects[fmt.Sprintf("o%05d.narinfo", i)] = []byte("x")
				}
				heads := func() (n int) {
					for _, c := range m.Checks {
						n += c
					}
					return n
				}
				p := NewPresence(sema.Wrap(m, semaphore.NewWeighted(4)), time.Minute)
				for i := range tc.asked {
					if ok, err := p.Recent(ctx, fmt.Sprintf("n%05d.narinfo", i)); ok || err != nil {
						t.Fatalf("absent key %d: %v %v", i, ok, err)
					}
				}
				if heads() != tc.asked-1 || m.Lists != tc.lists {
					t.Fatalf("%d requests, %d listings, want %d and %d", heads(), m.Lists, tc.asked-1, tc.lists)
				}
				// The listing answers, present or absent, what it
				// holds or lacks, with no request.
				if ok, err := p.Recent(ctx, "o00001.narinfo"); !ok || err != nil {
					t.Fatalf("present key: %v %v", ok, err)
				}
				if ok, err := p.Recent(ctx, "n99999.narinfo"); ok || err != nil {
					t.Fatalf("absent key: %v %v", ok, err)
				}
				if heads() != tc.asked-1 || m.Lists != tc.lists {
					t.Fatalf("after the listing: %d requests, %d listings, want %d and %d", heads(), m.Lists, tc.asked-1, tc.lists)
				}
				// It never answers a question bound after it was sent:
				// that takes a request or a listing sent after.
				time.Sleep(time.Millisecond)
				if _, err := p.Check(ctx, "o00001.narinfo", time.Now()); err != nil || heads()+m.Lists != tc.asked+tc.lists {
					t.Fatalf("a fresh check: %d requests, %d listings, %v, want one more of either", heads(), m.Lists, err)
				}
			})
		})
	}
}

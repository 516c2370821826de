package metrics

import (
	"time"

	"github.com/nixpushd/nixpushd/queue"
)

// QueueDepth is an Options.Queue reading q's counts by state. It costs
// one small read transaction, whatever the queue's size.
func QueueDepth(q *queue.Queue) func() (map[string]int, error) {
	return func() (map[string]int, error) {
		s, err := q.Stats()
		if err != nil {
			return nil, err
		}
		return map[string]int{
			string(queue.Pending): s.Pending, string(queue.InFlight): s.InFlight,
			string(queue.Done): s.Done, string(queue.Failed): s.Failed,
		}, nil
	}
}

// OldestPending is an Options.OldestPending reading when q's oldest item
// not yet uploaded, pending or in flight, was enqueued. It reads the first
// item of each state's index.
func OldestPending(q *queue.Queue) func() (time.Time, bool, error) {
	return func() (time.Time, bool, error) {
		var oldest time.Time
		found := false
		for _, s := range []queue.State{queue.Pending, queue.InFlight} {
			items, err := q.List(s, 1)
			if err != nil {
				return time.Time{}, false, err
			}
			if len(items) > 0 && (!found || items[0].Enqueued.Before(oldest)) {
				oldest, found = items[0].Enqueued, true
			}
		}
		return oldest, found, nil
	}
}

package egress

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runOwner(b *rvBroker, c *Channel) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	return func() { cancel(); <-done }
}

func postedOffsets(p *rvPoster) []int64 {
	var out []int64
	for _, r := range p.posted() {
		out = append(out, r.Offset)
	}
	return out
}

// Promise: one failing customer never holds up the others. Fault: the customer has maxInFlight messages
// queued (here 5): the partition stops fetching and another customer's message is never POSTed.
func TestReviewFailingCustomerBacklogStallsPartition(t *testing.T) {
	b := newRvBroker()
	for i := int64(0); i < 5; i++ {
		b.add("t", 0, i, "bad", "x")
	}
	b.add("t", 0, 5, "good", "y")
	p := &rvPoster{answer: func(ctx context.Context, r stream.Record) Attempt {
		if string(r.Key) == "bad" {
			return Attempt{Status: 503}
		}
		return Attempt{Status: http.StatusAccepted}
	}}
	stop := runOwner(b, rvChannel(b, &rvSink{}, p, "t", 5, nil))
	g := b.startGen("t", 0)
	time.Sleep(500 * time.Millisecond)
	got := postedOffsets(p)
	g.end()
	stop()
	for _, o := range got {
		if o == 5 {
			return
		}
	}
	t.Errorf("customer good's message never POSTed (POSTs: %v): the failing customer's backlog holds the partition until its deadline (10 min per message)", got)
}

package egress

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// Promise: one failing customer never holds up the others. Fault: the customer has maxInFlight messages
// queued (here 5): the partition stops fetching and another customer's message is never POSTed.
func TestFailingCustomerBacklogLeavesOthersFlowing(t *testing.T) {
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

// Promise: a failing connector never delays other channels/pipelines. Four of five configured webhook
// channels whose connectors hang take at most their shares of the egress's half of the budget: the fifth,
// healthy channel (and the inbound/outbound pipelines) still find room.
func TestHangingChannelsTakeOnlyTheirBudgetShares(t *testing.T) {
	budget := stage.NewBudget(4000)
	var stops []func()
	var gens []*rvGen
	for i := 0; i < 4; i++ {
		b := newRvBroker()
		for o := int64(0); o < 40; o++ {
			b.add("bad", 0, o, string(rune('a'+o)), string(make([]byte, 100)))
		}
		p := &rvPoster{answer: func(ctx context.Context, _ stream.Record) Attempt { return hang(ctx) }}
		stops = append(stops, runOwner(b, rvChannelOf(b, &rvSink{}, p, "bad", 1000, budget, 5)))
		gens = append(gens, b.startGen("bad", 0))
	}
	time.Sleep(300 * time.Millisecond)
	t.Logf("budget used %d of %d", budget.Used(), budget.Total())
	b := newRvBroker()
	b.add("good", 0, 0, "k", "hello")
	p := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusAccepted} }}
	stops = append(stops, runOwner(b, rvChannelOf(b, &rvSink{}, p, "good", 1000, budget, 5)))
	gens = append(gens, b.startGen("good", 0))
	time.Sleep(300 * time.Millisecond)
	got := len(p.posted())
	for i := range gens {
		go gens[i].end()
	}
	for _, s := range stops {
		go s()
	}
	if used := budget.Used(); used > budget.Total()/2 {
		t.Errorf("the egress holds %d of %d bytes, more than half", used, budget.Total())
	}
	if got == 0 {
		t.Errorf("the healthy channel POSTed nothing: four hanging connectors hold the whole budget (%d of %d)", budget.Used(), budget.Total())
	}
}

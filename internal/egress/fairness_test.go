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
	b := newBroker(1)
	for range 5 {
		produce(t, b, message(0, "bad", "x"))
	}
	produce(t, b, message(0, "good", "y"))
	p := answering(func(ctx context.Context, r stream.Record) Attempt {
		if string(r.Key) == "bad" {
			return Attempt{Status: 503}
		}
		return Attempt{Status: http.StatusAccepted}
	})
	stop := start(newTestChannel(b, p, 5))
	time.Sleep(500 * time.Millisecond)
	got := p.offsets()
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
	// sharing starts a channel of five sharing budget, on a broker of its own, whose topic holds outs.
	sharing := func(p Poster, outs ...stream.Output) {
		b := newBroker(1)
		produce(t, b, outs...)
		c := newTestChannel(b, p, 1000)
		c.cfg.Budget, c.cfg.Channels = budget, 5
		stops = append(stops, start(c))
	}
	for range 4 {
		var backlog []stream.Output
		for o := range 40 {
			backlog = append(backlog, message(0, string(rune('a'+o)), string(make([]byte, 100))))
		}
		sharing(answering(func(ctx context.Context, _ stream.Record) Attempt { return hang(ctx) }), backlog...)
	}
	time.Sleep(300 * time.Millisecond)
	t.Logf("budget used %d of %d", budget.Used(), budget.Total())
	p := accepting()
	sharing(p, message(0, "k", "hello"))
	time.Sleep(300 * time.Millisecond)
	got, used := len(p.posted()), budget.Used()
	for _, s := range stops {
		go s()
	}
	if used > budget.Total()/2 {
		t.Errorf("the egress holds %d of %d bytes, more than half", used, budget.Total())
	}
	if got == 0 {
		t.Errorf("the healthy channel POSTed nothing: four hanging connectors hold the whole budget (%d of %d)", used, budget.Total())
	}
}

package egress

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
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

// Promise: after a restart only messages unsettled at the last commit are delivered again.
// Fault: the partition moves twice; the middle owner does not reach (fetch) every offset the first owner
// listed as settled before it commits, and its commit metadata forgets them.
func TestReviewMetadataForgottenByIntermediateOwner(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "A", "a0") // hangs at every owner but the last
	b.add("t", 0, 1, "X", "x1")
	b.add("t", 0, 2, "A", "a2")
	b.add("t", 0, 3, "A", "a3")
	b.add("t", 0, 4, "B", "b4") // settled by owner 1
	hangHead := func(ctx context.Context, r stream.Record) Attempt {
		if r.Offset == 0 {
			return hang(ctx)
		}
		return Attempt{Status: http.StatusAccepted}
	}

	p1 := &rvPoster{answer: hangHead}
	stop1 := runOwner(b, rvChannel(b, &rvSink{}, p1, "t", 10, nil))
	g1 := b.startGen("t", 0)
	waitUntil(t, "owner 1 commits 0 with {1,4} settled", func() bool {
		om, _ := b.commit("t", 0)
		d := stage.DecodeSettled(om.Offset, om.Metadata)
		return om.Offset == 0 && d[1] && d[4]
	})
	g1.end()
	stop1()

	p2 := &rvPoster{answer: hangHead}
	stop2 := runOwner(b, rvChannel(b, &rvSink{}, p2, "t", 3, nil)) // another instance, maxInFlight 3
	g2 := b.startGen("t", 0)
	time.Sleep(300 * time.Millisecond)
	g2.end()
	stop2()
	om, _ := b.commit("t", 0)
	t.Logf("after owner 2: committed %d, settled above %v", om.Offset, stage.DecodeSettled(om.Offset, om.Metadata))

	p3 := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusAccepted} }}
	stop3 := runOwner(b, rvChannel(b, &rvSink{}, p3, "t", 10, nil))
	g3 := b.startGen("t", 0)
	waitUntil(t, "owner 3 settles everything", func() bool { om, _ := b.commit("t", 0); return om.Offset == 5 })
	g3.end()
	stop3()
	t.Logf("owner 3 POSTed offsets %v", postedOffsets(p3))
	for _, off := range postedOffsets(p3) {
		if off == 4 {
			t.Errorf("offset 4 was settled (202) by owner 1 and listed in its commit, yet POSTed again by owner 3")
		}
	}
}

// Promise: per customer, topic order, also across restarts. Fault: A (key K) is decided 4xx but its dead
// letter is not acknowledged yet; B (key K) is then POSTed and accepted (nothing to record), so it settles
// first; the partition moves. The next owner re-sends A and skips B: the connector sees A, B, A.
func TestReviewSkipReordersAKey(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "K", `{"n":"A"}`)
	b.add("t", 0, 1, "K", `{"n":"B"}`)
	sink1 := &rvSink{block: true} // the dead letter of A does not get acknowledged in time
	p1 := &rvPoster{answer: func(_ context.Context, r stream.Record) Attempt {
		if r.Offset == 0 {
			return Attempt{Status: http.StatusBadRequest}
		}
		return Attempt{Status: http.StatusAccepted}
	}}
	stop1 := runOwner(b, rvChannel(b, sink1, p1, "t", 10, nil))
	g1 := b.startGen("t", 0)
	waitUntil(t, "owner 1 POSTs A", func() bool { return len(p1.posted()) == 1 })
	time.Sleep(100 * time.Millisecond) // B must wait until A's dead letter is acknowledged, which it never is
	if got := postedOffsets(p1); len(got) != 1 {
		t.Errorf("owner 1 POSTed %v: B went out before A's outcome was recorded", got)
	}
	g1.end()
	stop1()

	p2 := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusAccepted} }}
	stop2 := runOwner(b, rvChannel(b, &rvSink{}, p2, "t", 10, nil))
	g2 := b.startGen("t", 0)
	waitUntil(t, "owner 2 commits 2", func() bool { om, _ := b.commit("t", 0); return om.Offset == 2 })
	g2.end()
	stop2()
	var seq []string
	for _, r := range append(p1.posted(), p2.posted()...) {
		seq = append(seq, string(r.Value))
	}
	t.Logf("customer K received, in order: %v", seq)
	if last := seq[len(seq)-1]; last != `{"n":"B"}` {
		t.Errorf("customer K's last delivery is %s, after B: A now arrives (and may be accepted) after B", last)
	}
}

// Promise: a failing connector never delays other channels/pipelines. Four of five configured webhook
// channels whose connectors hang take at most their shares of the egress's half of the budget: the fifth,
// healthy channel (and the inbound/outbound pipelines) still find room.
func TestReviewFourHangingChannelsTakeTheWholeBudget(t *testing.T) {
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

// Promise: one customer, one message at a time. Fault: the same key on two partitions (partitions added,
// or a producer with another partitioner): both messages are POSTed at the same time.
func TestReviewSameKeyTwoPartitionsConcurrent(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "K", "k-on-p0")
	b.add("t", 1, 0, "K", "k-on-p1")
	var inFlight, maxSeen atomic.Int32
	p := &rvPoster{answer: func(context.Context, stream.Record) Attempt {
		n := inFlight.Add(1)
		for {
			m := maxSeen.Load()
			if n <= m || maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		inFlight.Add(-1)
		return Attempt{Status: http.StatusAccepted}
	}}
	stop := runOwner(b, rvChannel(b, &rvSink{}, p, "t", 10, nil))
	g := b.startGen("t", 0, 1)
	waitUntil(t, "both POSTed", func() bool { return len(p.posted()) == 2 })
	time.Sleep(150 * time.Millisecond)
	g.end()
	stop()
	if maxSeen.Load() > 1 {
		t.Errorf("customer K had %d POSTs in flight at once", maxSeen.Load())
	}
}

// Promise: records with no key — different customers in parallel. Keyless records whose value names no
// customer each get a queue of their own, so one hanging does not hold up the others.
func TestReviewNoKeyRecordsSerialized(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "", `{"customer":"hanging"}`)
	b.add("t", 0, 1, "", `{"customer":"healthy"}`)
	p := &rvPoster{answer: func(ctx context.Context, r stream.Record) Attempt {
		if r.Offset == 0 {
			return hang(ctx)
		}
		return Attempt{Status: http.StatusAccepted}
	}}
	stop := runOwner(b, rvChannel(b, &rvSink{}, p, "t", 10, nil))
	g := b.startGen("t", 0)
	time.Sleep(300 * time.Millisecond)
	got := postedOffsets(p)
	g.end()
	stop()
	if len(got) < 2 {
		t.Errorf("POSTed %v: the healthy keyless customer waits behind the hanging one", got)
	}
}

// Keyless records are queued by the customer their value names (channelData.channelCustomerIdentifier):
// one message at a time for the same customer, other customers in parallel.
func TestKeylessRecordsQueuedByChannelCustomer(t *testing.T) {
	msg := func(customer string) string {
		return `{"header":{"channelData":{"channelCustomerIdentifier":"` + customer + `"}}}`
	}
	b := newRvBroker()
	b.add("t", 0, 0, "", msg("hanging"))
	b.add("t", 0, 1, "", msg("hanging"))
	b.add("t", 0, 2, "", msg("healthy"))
	p := &rvPoster{answer: func(ctx context.Context, r stream.Record) Attempt {
		if r.Offset == 0 {
			return hang(ctx)
		}
		return Attempt{Status: http.StatusAccepted}
	}}
	stop := runOwner(b, rvChannel(b, &rvSink{}, p, "t", 10, nil))
	g := b.startGen("t", 0)
	waitUntil(t, "the healthy customer POSTed", func() bool { return len(p.posted()) == 2 })
	time.Sleep(100 * time.Millisecond)
	got := postedOffsets(p)
	g.end()
	stop()
	slices.Sort(got)
	if !slices.Equal(got, []int64{0, 2}) {
		t.Errorf("POSTed %v, want 0 and 2: offset 1 waits behind offset 0 of the same customer", got)
	}
}

// refuseSink refuses, as a topic outside its timestamp window does, every notification stamped before
// oldest (all of them when oldest is zero), and takes the rest.
type refuseSink struct {
	rvSink
	oldest time.Time
}

func (s *refuseSink) Write(ctx context.Context, outs []stream.Output) []error {
	errs := make([]error, len(outs))
	var taken []stream.Output
	for i, o := range outs {
		if o.Topic == "notes" && (s.oldest.IsZero() || o.Time.Before(s.oldest)) {
			errs[i] = fmt.Errorf("timestamp out of range: %w", stage.ErrRefused)
			continue
		}
		taken = append(taken, o)
	}
	s.mu.Lock()
	s.written = append(s.written, taken...)
	s.mu.Unlock()
	return errs
}

// Promise: every input ends as an output or a dead letter. A connector's forwarded DELIVERYNOTIFICATION the
// notifications topic refuses for its timestamp (the original record's, after a long retry) is written
// with the time of now; one refused for good becomes a dead letter carrying it, instead of being dropped.
func TestForwardedNotificationRefused(t *testing.T) {
	note := connectorNote()
	if !isNotification([]byte(note), cim.Limits{}) {
		t.Fatal("fixture is not a valid notification")
	}
	for _, tc := range []struct {
		name   string
		oldest time.Time
		topic  string
	}{
		{"restamped", time.Now().Add(-time.Minute), "notes"},
		{"dead-lettered", time.Time{}, "dead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRvBroker()
			b.add("t", 0, 0, "K", "m")
			b.logs["t"][0][0].Time = time.Now().Add(-time.Hour)
			sink := &refuseSink{oldest: tc.oldest}
			p := &rvPoster{answer: func(context.Context, stream.Record) Attempt {
				return Attempt{Status: http.StatusOK, Body: []byte(note)}
			}}
			c := rvChannel(b, sink, p, "t", 10, nil)
			c.cfg.DeadLetters.Topic = "dead"
			stop := runOwner(b, c)
			g := b.startGen("t", 0)
			waitUntil(t, "committed 1", func() bool { om, _ := b.commit("t", 0); return om.Offset == 1 })
			g.end()
			stop()
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if len(sink.written) != 1 || sink.written[0].Topic != tc.topic {
				t.Fatalf("written %v, want one record to %s", sink.written, tc.topic)
			}
			if tc.topic == "dead" && string(sink.written[0].Value) != note {
				t.Errorf("the dead letter carries %q, want the connector's notification", sink.written[0].Value)
			}
		})
	}
}

func connectorNote() string {
	return `{"id":"dn-1","header":{"sender":{"id":"wa","type":"CONNECTOR","senderName":"wa"},` +
		`"channelData":{"serviceIdentifier":"svc","channelCustomerIdentifier":"c"},"conversationId":"c-x"},` +
		`"body":{"type":"DELIVERYNOTIFICATION","messageId":"m1","status":"DELIVERED","reasonCode":200}}`
}

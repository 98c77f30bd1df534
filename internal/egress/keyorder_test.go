package egress

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// Promise: one customer, one message at a time. Fault: the same key on two partitions (partitions added,
// or a producer with another partitioner): both messages are POSTed at the same time.
func TestSameKeyOnTwoPartitionsOneAtATime(t *testing.T) {
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
func TestKeylessRecordsWithoutACustomerInParallel(t *testing.T) {
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

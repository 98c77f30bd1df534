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
	b := newBroker(2)
	produce(t, b, message(0, "K", "k-on-p0"), message(1, "K", "k-on-p1"))
	var inFlight, maxSeen atomic.Int32
	p := answering(func(context.Context, stream.Record) Attempt {
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
	})
	stop := start(newTestChannel(b, p, 10))
	waitUntil(t, "both POSTed", func() bool { return len(p.posted()) == 2 })
	time.Sleep(150 * time.Millisecond)
	stop()
	if maxSeen.Load() > 1 {
		t.Errorf("customer K had %d POSTs in flight at once", maxSeen.Load())
	}
}

// Promise: records with no key — different customers in parallel. Keyless records whose value names no
// customer each get a queue of their own, so one hanging does not hold up the others.
func TestKeylessRecordsWithoutACustomerInParallel(t *testing.T) {
	b := newBroker(1)
	produce(t, b, message(0, "", `{"customer":"hanging"}`), message(0, "", `{"customer":"healthy"}`))
	p := answering(hangAtOffset0)
	stop := start(newTestChannel(b, p, 10))
	time.Sleep(300 * time.Millisecond)
	got := p.offsets()
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
	b := newBroker(1)
	produce(t, b, message(0, "", msg("hanging")), message(0, "", msg("hanging")), message(0, "", msg("healthy")))
	p := answering(hangAtOffset0)
	stop := start(newTestChannel(b, p, 10))
	waitUntil(t, "the healthy customer POSTed", func() bool { return len(p.posted()) == 2 })
	time.Sleep(100 * time.Millisecond)
	got := p.offsets()
	stop()
	slices.Sort(got)
	if !slices.Equal(got, []int64{0, 2}) {
		t.Errorf("POSTed %v, want 0 and 2: offset 1 waits behind offset 0 of the same customer", got)
	}
}

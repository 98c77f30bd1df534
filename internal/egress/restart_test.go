package egress

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// Promise: after a restart only messages unsettled at the last commit are delivered again.
// Fault: the partition moves twice; the middle owner does not reach (fetch) every offset the first owner
// listed as settled before it commits, and its commit metadata forgets them.
func TestSettledOffsetsSurviveAnIntermediateOwner(t *testing.T) {
	b := newBroker(1)
	produce(t, b,
		message(0, "A", "a0"), // hangs at every owner but the last
		message(0, "X", "x1"),
		message(0, "A", "a2"),
		message(0, "A", "a3"),
		message(0, "B", "b4")) // settled by owner 1

	stop1 := start(newTestChannel(b, answering(hangAtOffset0), 10))
	waitUntil(t, "owner 1 commits 0 with {1,4} settled", func() bool {
		om := committed(b)
		d := stage.DecodeSettled(om.Offset, om.Metadata)
		return om.Offset == 0 && d[1] && d[4]
	})
	moveAway(b, stop1)

	stop2 := start(newTestChannel(b, answering(hangAtOffset0), 3)) // another instance, maxInFlight 3
	time.Sleep(300 * time.Millisecond)
	moveAway(b, stop2)
	om := committed(b)
	t.Logf("after owner 2: committed %d, settled above %v", om.Offset, stage.DecodeSettled(om.Offset, om.Metadata))

	p3 := accepting()
	stop3 := start(newTestChannel(b, p3, 10))
	waitUntil(t, "owner 3 settles everything", func() bool { return committed(b).Offset == 5 })
	stop3()
	t.Logf("owner 3 POSTed offsets %v", p3.offsets())
	for _, off := range p3.offsets() {
		if off == 4 {
			t.Errorf("offset 4 was settled (202) by owner 1 and listed in its commit, yet POSTed again by owner 3")
		}
	}
}

// Promise: per customer, topic order, also across restarts. Fault: A (key K) is decided 4xx but its dead
// letter is not acknowledged yet; B (key K) is then POSTed and accepted (nothing to record), so it settles
// first; the partition moves. The next owner re-sends A and skips B: the connector sees A, B, A.
func TestRestartKeepsACustomersOrder(t *testing.T) {
	b := newBroker(1)
	produce(t, b, message(0, "K", `{"n":"A"}`), message(0, "K", `{"n":"B"}`))
	b.Fail = failing("dead", errUnavailable) // the dead letter of A does not get acknowledged in time
	p1 := answering(func(_ context.Context, r stream.Record) Attempt {
		if r.Offset == 0 {
			return Attempt{Status: http.StatusBadRequest}
		}
		return Attempt{Status: http.StatusAccepted}
	})
	stop1 := start(newTestChannel(b, p1, 10))
	waitUntil(t, "owner 1 POSTs A", func() bool { return len(p1.posted()) == 1 })
	time.Sleep(100 * time.Millisecond) // B must wait until A's dead letter is acknowledged, which it never is
	if got := p1.offsets(); len(got) != 1 {
		t.Errorf("owner 1 POSTed %v: B went out before A's outcome was recorded", got)
	}
	moveAway(b, stop1)

	b.Fail = nil
	p2 := accepting()
	stop2 := start(newTestChannel(b, p2, 10))
	waitUntil(t, "owner 2 commits 2", func() bool { return committed(b).Offset == 2 })
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

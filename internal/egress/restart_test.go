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
func TestRestartKeepsACustomersOrder(t *testing.T) {
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

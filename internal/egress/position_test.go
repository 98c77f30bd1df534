package egress

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// markerBroker's readers stand past a transaction's marker (offset end-1) once they returned the last
// record, as the read_committed reader does.
type markerBroker struct {
	*rvBroker
	end int64
}

func (b markerBroker) Reader(_ string, topic string, p int, off int64) (stage.Reader, error) {
	return &markerReader{rvReader: rvReader{b: b.rvBroker, topic: topic, p: p, next: off}, end: b.end}, nil
}

type markerReader struct {
	rvReader
	end int64
}

func (r *markerReader) Position() int64 {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	for _, rec := range r.b.logs[r.topic][r.p] {
		if rec.Offset >= r.next {
			return r.next
		}
	}
	return max(r.next, r.end)
}

// A webhook topic whose last offset is a transaction's commit marker: once its records are delivered
// the channel commits past the marker, so its lag drains to 0 rather than staying at 1 for good.
func TestChannelCommitsPastTrailingMarkers(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "K", `{"n":"A"}`)
	b.add("t", 0, 1, "L", `{"n":"B"}`)
	post := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusAccepted} }}
	c := NewChannel(Config{Channels: 1, Channel: "c", Topic: "t", GroupID: "g", Notifications: "notes",
		Retry:       RetryPolicy{MinBackoff: time.Hour, MaxBackoff: time.Hour, Deadline: 10 * time.Hour},
		Concurrency: 8, MaxInFlight: 10, CommitInterval: 20 * time.Millisecond, RevokeWait: 100 * time.Millisecond},
		markerBroker{b, 3}, &rvSink{}, post, zap.NewNop())
	stop := runOwner(b, c)
	g := b.startGen("t", 0)
	waitUntil(t, "both delivered", func() bool { return len(post.posted()) == 2 })
	waitUntil(t, "commit past the marker at 2", func() bool { om, _ := b.commit("t", 0); return om.Offset == 3 })
	g.end()
	stop()
}

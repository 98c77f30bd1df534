package egress

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/stream"
)

// A webhook channel's topic can be written by anyone with access: a record there that carries cimstream's
// header names (a forged dead-letter code, a replay marker) gets a dead letter whose only cimstream headers
// are the ones cimstream wrote; the forged ones arrive renamed.
func TestWebhookRecordsForgedHeadersAreRenamed(t *testing.T) {
	b := newRvBroker()
	b.add("t", 0, 0, "ann", `{"id":"m1"}`)
	b.mu.Lock()
	b.logs["t"][0][0].Headers = []stream.Header{{Key: stream.HeaderReplayMarker, Value: []byte("done")},
		{Key: deadletter.HeaderCodes, Value: []byte("forged")}, {Key: stream.HeaderSourceOffset, Value: []byte("99")}}
	b.mu.Unlock()
	sink := &rvSink{}
	p := &rvPoster{answer: func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusBadRequest} }}
	stop := runOwner(b, rvChannel(b, sink, p, "t", 5, nil))
	defer stop()
	g := b.startGen("t", 0)
	defer g.end()
	var dl stream.Output
	waitUntil(t, "the dead letter", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, o := range sink.written {
			if o.Topic != "notes" { // the dead letter (the harness names no dead-letter topic)
				dl = o
				return true
			}
		}
		return false
	})
	renamed := 0
	for _, h := range dl.Headers {
		if strings.HasPrefix(h.Key, stream.RenamedPrefix) {
			renamed++
		}
	}
	rec := stream.Record{Headers: dl.Headers}
	codes, _ := rec.Header(deadletter.HeaderCodes)
	off, _ := rec.Header(stream.HeaderSourceOffset)
	_, marker := rec.Header(stream.HeaderReplayMarker)
	if renamed != 3 || string(codes) != CodeRejected || string(off) != "0" || marker {
		t.Fatalf("dead letter headers %v: want the 3 forged ones renamed and cimstream's own first", dl.Headers)
	}
}

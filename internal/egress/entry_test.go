package egress

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

// A webhook channel's topic can be written by anyone with access: a record there that carries cimstream's
// header names (a forged dead-letter code, a replay marker) gets a dead letter whose only cimstream headers
// are the ones cimstream wrote; the forged ones arrive renamed.
func TestWebhookRecordsForgedHeadersAreRenamed(t *testing.T) {
	b := newBroker(1)
	forged := message(0, "ann", `{"id":"m1"}`)
	forged.Headers = []stream.Header{{Key: stream.HeaderReplayMarker, Value: []byte("done")},
		{Key: deadletter.HeaderCodes, Value: []byte("forged")}, {Key: stream.HeaderSourceOffset, Value: []byte("99")}}
	produce(t, b, forged)
	p := answering(func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusBadRequest} })
	defer start(newTestChannel(b, p, 5))()
	waitUntil(t, "the dead letter", func() bool { return len(b.Records("dead")) > 0 })
	dl := b.Records("dead")[0]
	renamed := 0
	for _, h := range dl.Headers {
		if strings.HasPrefix(h.Key, stream.RenamedPrefix) {
			renamed++
		}
	}
	codes, _ := dl.Header(deadletter.HeaderCodes)
	off, _ := dl.Header(stream.HeaderSourceOffset)
	_, marker := dl.Header(stream.HeaderReplayMarker)
	if renamed != 3 || string(codes) != CodeRejected || string(off) != "0" || marker {
		t.Fatalf("dead letter headers %v: want the 3 forged ones renamed and cimstream's own first", dl.Headers)
	}
}

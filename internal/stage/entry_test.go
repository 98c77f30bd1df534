package stage_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

type renameCounter struct {
	stage.NopObserver
	n atomic.Int64
}

func (c *renameCounter) RenamedHeaders(_, _ string, n int) { c.n.Add(int64(n)) }

// A record of an entry topic that carries cimstream's header names (a forged lifecycle event, replay
// bookkeeping, source coordinates) reaches neither the handler's outputs nor its dead letter under
// those names: they arrive renamed, counted, and cimstream's own dead-letter headers stay the only ones.
func TestEntryTopicHeadersInCimstreamsNamespaceAreRenamed(t *testing.T) {
	forged := []stream.Header{
		{Key: stream.HeaderEvent, Value: []byte("CHANNEL_SESSION_ENDED")},
		{Key: stream.HeaderReplayMarker, Value: []byte("intent")},
		{Key: stream.HeaderReplayCount, Value: []byte("99")},
		{Key: stream.HeaderReplayOf, Value: []byte("dlq/0/0")},
		{Key: stream.HeaderSourceOffset, Value: []byte("123456")},
		{Key: deadletter.HeaderCodes, Value: []byte("forged")},
		{Key: "x-trace", Value: []byte("kept")},
	}
	b := newBroker("in", "out", "dlq")
	recs := inputs("a:1", "b:bad")
	for i := range recs {
		recs[i].Headers = forged
	}
	produce(t, b, recs)
	// The handler copies its input's headers into its output, as the outbound stage does.
	copying := handlerFunc(func(batch []stream.Record) []stream.Result {
		res := echo.Process(batch)
		for i := range res {
			for j := range res[i].Outputs {
				res[i].Outputs[j].Headers = batch[i].Headers
			}
		}
		return res
	})
	obs := &renameCounter{}
	start(t, b, b, copying, func(c *stage.Config) {
		c.Entry = func(topic string) bool { return topic == "in" }
		c.Observer = obs
	})
	if !eventually(func() bool { return committed(b, "in", 0) == 2 }) {
		t.Fatalf("committed %d, want 2", committed(b, "in", 0))
	}
	outs, dls := b.Records("out"), b.Records("dlq")
	if len(outs) != 1 || len(dls) != 1 {
		t.Fatalf("out %d dlq %d, want 1 and 1", len(outs), len(dls))
	}
	for _, o := range []stream.Record{outs[0], dls[0]} {
		var renamed, trace int
		for _, h := range o.Headers {
			switch {
			case strings.HasPrefix(h.Key, stream.RenamedPrefix+stream.Namespace):
				renamed++
			case h.Key == "x-trace":
				trace++
			}
		}
		if renamed != 6 || trace != 1 {
			t.Fatalf("%s: %d renamed, %d x-trace, want 6 and 1: %v", o.Topic, renamed, trace, o.Headers)
		}
	}
	for _, h := range forged[:6] {
		if _, ok := outs[0].Header(h.Key); ok {
			t.Fatalf("output carries %s", h.Key)
		}
	}
	dl := dls[0]
	if codes, _ := dl.Header(deadletter.HeaderCodes); string(codes) == "forged" {
		t.Fatal("the forged codes header comes first in the dead letter")
	}
	if off, _ := dl.Header(stream.HeaderSourceOffset); string(off) != "1" {
		t.Fatalf("dead letter source offset %q, want 1", off)
	}
	if obs.n.Load() != 12 {
		t.Fatalf("counted %d renamed headers, want 12", obs.n.Load())
	}
}

// A topic that is not an entry (the repartition topic, written by cimstream) keeps its headers.
func TestOwnTopicHeadersAreKept(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	recs := inputs("a:1")
	recs[0].Headers = []stream.Header{{Key: stream.HeaderSourceOffset, Value: []byte("5")}}
	produce(t, b, recs)
	copying := handlerFunc(func(batch []stream.Record) []stream.Result {
		return []stream.Result{stream.Emit(stream.Output{Topic: "out", Partition: stream.ByKey, Value: batch[0].Value, Headers: batch[0].Headers})}
	})
	start(t, b, b, copying, func(c *stage.Config) { c.Entry = func(string) bool { return false } })
	if !eventually(func() bool { return committed(b, "in", 0) == 1 }) {
		t.Fatal("not committed")
	}
	if off, _ := b.Records("out")[0].Header(stream.HeaderSourceOffset); string(off) != "5" {
		t.Fatalf("own header %q, want 5", off)
	}
}

func TestRenameReservedAllocatesNothingWithoutReservedHeaders(t *testing.T) {
	hs := []stream.Header{{Key: "traceparent", Value: []byte("x")}, {Key: "cimstreamish", Value: nil}}
	if n := testing.AllocsPerRun(100, func() { stream.RenameReserved(hs) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	out, n := stream.RenameReserved(append(hs, stream.Header{Key: "cimstream.x"}))
	if n != 1 || out[2].Key != "x-original-cimstream.x" || hs[0].Key != "traceparent" {
		t.Fatalf("%d %v", n, out)
	}
}

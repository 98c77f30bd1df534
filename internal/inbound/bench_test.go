package inbound

import (
	"os"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

// BenchmarkNormalizeEnrich is the whole inbound work on one typical 1 KiB message: decode, validate,
// normalize and re-encode (stage 1), then decode, decide the session and encode again (stage 2), with
// the changelog state.
func BenchmarkNormalizeEnrich(b *testing.B) {
	value, err := os.ReadFile("../../pkg/cim/testdata/bench/plain-1k.json")
	if err != nil {
		b.Fatal(err)
	}
	n := NewNormalizer(testTopics, 1<<20, nil)
	e := NewEnricher(testTopics, "sessions", 0, session.Fixed(30*time.Minute), nil, nil)
	rec := stream.Record{Topic: "cim.inbound.web", Value: value, Time: time.UnixMilli(1732400000000)}
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		rec.Offset = i
		out := n.Process(rec).Outputs[0]
		e.Process(stream.Record{Topic: "rep", Offset: i, Key: out.Key, Value: out.Value, Headers: out.Headers, Time: out.Time})
	}
}

// BenchmarkNormalizeEnrichFastPath is the same work as the fast path does it: the enricher takes the
// normalizer's decoded output instead of decoding its bytes again.
func BenchmarkNormalizeEnrichFastPath(b *testing.B) {
	value, err := os.ReadFile("../../pkg/cim/testdata/bench/plain-1k.json")
	if err != nil {
		b.Fatal(err)
	}
	n := NewNormalizer(testTopics, 1<<20, nil)
	e := NewEnricher(testTopics, "sessions", 0, session.Fixed(30*time.Minute), nil, nil)
	rec := stream.Record{Topic: "cim.inbound.web", Value: value, Time: time.UnixMilli(1732400000000)}
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		i++
		rec.Offset = i
		res, m := n.process(rec, true)
		out := res.Outputs[0]
		e.ProcessMessage(stream.Record{Topic: "rep", Offset: i, Key: out.Key, Value: out.Value, Headers: out.Headers, Time: out.Time}, m)
	}
}

package kafkaedge_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
)

// BenchmarkIntegrationSinkRequests writes keyed records to a 6-partition topic, calls of 10 and 100
// records, and reports the produce requests sent per 1,000 records (kafkaclient.RequestTotals deltas):
// one per partition and chunk before, one per broker and round now.
func BenchmarkIntegrationSinkRequests(b *testing.B) {
	for _, perCall := range []int{10, 100} {
		b.Run(strconv.Itoa(perCall)+"-per-call", func(b *testing.B) {
			f := kafkatest.Factory(b)
			topic := kafkatest.Topic(b, "bench", 6)
			s := kafkaedge.NewSink(f, "bench", nil)
			outs := make([]stream.Output, perCall)
			for i := range outs {
				outs[i] = out(topic, stream.ByKey, "customer-"+strconv.Itoa(i), "value "+strconv.Itoa(i))
			}
			ctx := context.Background()
			warm(b, s, outs)
			before := kafkaclient.RequestTotals()["Produce"]
			b.ResetTimer()
			for range b.N {
				for i, err := range s.Write(ctx, outs) {
					if err != nil {
						b.Fatalf("record %d: %v", i, err)
					}
				}
			}
			b.StopTimer()
			sent := kafkaclient.RequestTotals()["Produce"] - before
			b.ReportMetric(float64(sent)*1000/float64(b.N*perCall), "requests/1000records")
		})
	}
}

// warm writes outs until every record is acknowledged (a new topic's leaders start serving within
// seconds), at most 50 times.
func warm(b *testing.B, s *kafkaedge.Sink, outs []stream.Output) {
	var err error
	for range 50 {
		err = nil
		for _, e := range s.Write(context.Background(), outs) {
			if e != nil {
				err = e
			}
		}
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("warm-up: %v", err)
}

package kafkaclient

import (
	"context"
	"maps"
	"net"
	"sync"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// Requests sent through the shared client are counted by API (produce, fetch, metadata, ...), process
// wide, so the benchmark and the metrics can say how many round trips the data path costs per message
// (the Java client's measure: one produce and one fetch request per broker and round).

var requests struct {
	sync.Mutex
	totals map[string]int64
}

// countingTransport counts each request before handing it to the transport.
type countingTransport struct {
	next kafka.RoundTripper
}

func (t countingTransport) RoundTrip(ctx context.Context, addr net.Addr, req protocol.Message) (protocol.Message, error) {
	countRequest(req.ApiKey().String())
	return t.next.RoundTrip(ctx, addr, req)
}

func countRequest(api string) {
	requests.Lock()
	defer requests.Unlock()
	if requests.totals == nil {
		requests.totals = map[string]int64{}
	}
	requests.totals[api]++
}

// RequestTotals returns the requests sent so far through the shared client, by API name as the Kafka
// protocol spells it ("Produce", "Fetch", "Metadata", ...); "Produce" and "Fetch" are always present.
func RequestTotals() map[string]int64 {
	requests.Lock()
	defer requests.Unlock()
	out := map[string]int64{"Produce": 0, "Fetch": 0}
	maps.Copy(out, requests.totals)
	return out
}

package kafkaclient

import (
	"context"
	"net"
	"testing"

	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"
	"github.com/segmentio/kafka-go/protocol/produce"
)

type answering struct{ calls int }

func (a *answering) RoundTrip(context.Context, net.Addr, protocol.Message) (protocol.Message, error) {
	a.calls++
	return nil, nil
}

func TestRequestsAreCountedByAPI(t *testing.T) {
	before := RequestTotals()
	next := &answering{}
	tr := countingTransport{next: next}
	for range 3 {
		_, _ = tr.RoundTrip(context.Background(), nil, &produce.Request{})
	}
	_, _ = tr.RoundTrip(context.Background(), nil, &fetch.Request{})
	after := RequestTotals()
	if got := after["Produce"] - before["Produce"]; got != 3 {
		t.Errorf("Produce counted %d, want 3", got)
	}
	if got := after["Fetch"] - before["Fetch"]; got != 1 {
		t.Errorf("Fetch counted %d, want 1", got)
	}
	if next.calls != 4 {
		t.Errorf("transport called %d times, want 4", next.calls)
	}
}

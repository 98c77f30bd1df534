package inbound

import (
	"fmt"
	"testing"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

// heldPipeline is a pipeline as watchUpstream looks at held records with it: the fast path on or off.
func heldPipeline(fastPath bool) (*Pipeline, func(stream.Record, int) (int, bool)) {
	cfg := config.Default()
	cfg.Inbound.FastPath = fastPath
	p := &Pipeline{cfg: cfg, home: kafkaedge.HomePartition, log: zap.NewNop()}
	n := p.normalizer()
	n.observer = nopObserver{}
	return p, p.destination(n)
}

// A held record goes to the sessions partition stage 1 sends it to, as the sink partitions it: its
// customer's (the session key's with the fast path off), wherever and however the connector wrote it;
// a reply without channelData, a receipt and a record that will be dead-lettered go to none.
func TestHeldDestinationIsStageOnesDecision(t *testing.T) {
	const n = 4
	customer := ""
	for i := 0; customer == ""; i++ { // one whose session key is on another partition than the customer
		c := fmt.Sprint("cust-", i)
		if kafkaedge.HomePartition([]byte(c), n) != kafkaedge.HomePartition([]byte(session.Key("web", c)), n) {
			customer = c
		}
	}
	home := kafkaedge.HomePartition([]byte(customer), n)
	value := []byte(text(customer, "hello", ""))
	rec := func(partition int, key string, value []byte) stream.Record {
		r := stream.Record{Topic: "cim.inbound.web", Partition: partition, Offset: 3, Value: value}
		if key != "" {
			r.Key = []byte(key)
		}
		return r
	}
	reply := []byte(`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"conversationId":"conv-1"},"body":{"type":"PLAIN","markdownText":"reply"}}`)
	receipt := []byte(`{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` +
		customer + `"},"conversationId":"conv-1"},"body":{"type":"DELIVERYNOTIFICATION","messageId":"m","status":"READ"}}`)
	invalid := []byte(`{"header":{"sender":{"id":"w"}},"body":{"type":"PLAIN"}}`)

	_, fast := heldPipeline(true)
	_, bySession := heldPipeline(false)
	for _, c := range []struct {
		name string
		dest func(stream.Record, int) (int, bool)
		rec  stream.Record
		want int // -1: no sessions partition
	}{
		{"fast path: on its home partition, keyed by customer", fast, rec(home, customer, value), home},
		{"repartitioned: on another partition, keyed otherwise", fast, rec((home+1)%n, "conn-key", value), home},
		{"unkeyed", fast, rec((home+2)%n, "", value), home},
		{"fast path off: by session key", bySession, rec(home, customer, value), kafkaedge.HomePartition([]byte(session.Key("web", customer)), n)},
		{"dead-lettered", fast, rec(home, customer, invalid), -1},
		{"conversation-keyed, no channelData", fast, rec(home, "conv-1", reply), -1},
		{"conversation-keyed, fast path off", bySession, rec(home, "conv-1", reply), -1},
		{"receipt", fast, rec(home, customer, receipt), -1},
	} {
		got, ok := c.dest(c.rec, n)
		if !ok {
			got = -1
		}
		if got != c.want {
			t.Errorf("%s: sessions partition %d, want %d", c.name, got, c.want)
		}
	}
	if got, ok := fast(rec(home, customer, value), 7); !ok || got != kafkaedge.HomePartition([]byte(customer), 7) {
		t.Errorf("of another partition count: %d, %v", got, ok)
	}
}

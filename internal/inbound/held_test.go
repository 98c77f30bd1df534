package inbound

import (
	"context"
	"fmt"
	"slices"
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

// countingRead is a partition read by the peeker: every offset in range is a record; reads counts how
// often each offset was read.
func countingRead(reads map[int64]int) func(context.Context, string, int, int64, int64, func(stream.Record) error) error {
	return func(_ context.Context, _ string, _ int, from, end int64, fn func(stream.Record) error) error {
		for o := from; o < end; o++ {
			reads[o]++
			if err := fn(stream.Record{Offset: o}); err != nil {
				return err
			}
		}
		return nil
	}
}

// A transaction left open while non-transactional traffic goes on (50 records a reading) lets the
// held range grow past what one reading reads: it is read on over the next readings, each offset once,
// and once the scan has caught up the partition holds only where its records go, for as long as the
// transaction stays open, not every sessions partition.
func TestHeldPeekerReadsALongHeldRangeInChunks(t *testing.T) {
	reads := map[int64]int{}
	h := &heldPeeker{scans: map[partitionKey]*heldScan{}, read: countingRead(reads),
		dest: func(stream.Record, int) (int, bool) { return 1, true }}
	lso, high := int64(100), int64(100+25_000)
	caughtUp := -1
	for i := range 40 {
		got := h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, lso, high)}, 4)[partitionKey{"a", 0}]
		switch {
		case !got.All && !slices.Equal(got.To, []int{1}):
			t.Fatalf("reading %d: held records go to sessions partition 1 only: %+v", i, got)
		case !got.All && caughtUp < 0:
			caughtUp = i
		case got.All && caughtUp >= 0:
			t.Fatalf("reading %d: the scan caught up at reading %d, yet every sessions partition is held again", i, caughtUp)
		}
		high += 50
		if i == 20 {
			lso += 12_000 // another transaction ended: the one left open began later
		}
	}
	if caughtUp < 0 || caughtUp > 4 {
		t.Fatalf("the held range was not read within a few readings (caught up at %d): every sessions partition held while the transaction is open", caughtUp)
	}
	for o := int64(100); o < high-50; o++ {
		if reads[o] != 1 {
			t.Fatalf("offset %d read %d times, want once", o, reads[o])
		}
	}
}

// When the last stable offset moves while records are still held above it, what was learnt of the
// offsets above it is kept and only the new ones are read; a sessions partition only records below
// the new last stable offset went to is held no more. A change of the repartition topic's partition
// count, or a last stable offset that went back, reads the held range again.
func TestHeldPeekerKeepsWhatItLearntWhenTheLastStableOffsetMoves(t *testing.T) {
	reads := map[int64]int{}
	total := func() (n int) {
		for _, c := range reads {
			n += c
		}
		return n
	}
	// Below offset 15 records go to the last sessions partition, from 15 on to the others.
	h := &heldPeeker{scans: map[partitionKey]*heldScan{}, read: countingRead(reads),
		dest: func(rec stream.Record, n int) (int, bool) {
			if rec.Offset < 15 {
				return n - 1, true
			}
			return int(rec.Offset) % (n - 1), true
		}}
	at := func(lso, high int64, partitions int) Held {
		return h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, lso, high)}, partitions)[partitionKey{"a", 0}]
	}
	if got := at(10, 20, 4); !slices.Equal(got.To, []int{0, 1, 2, 3}) || got.All || total() != 10 {
		t.Fatalf("offsets 10 to 19 go to every sessions partition: %+v after %d reads", got, total())
	}
	if got := at(15, 25, 4); !slices.Equal(got.To, []int{0, 1, 2}) || got.All || total() != 15 {
		t.Fatalf("the last stable offset moved to 15: only 20 to 24 read, partition 3 no longer held: %+v after %d reads", got, total())
	}
	if got := at(15, 25, 5); !slices.Equal(got.To, []int{0, 1, 2, 3}) || got.All || total() != 25 {
		t.Fatalf("a fifth repartition partition: 15 to 24 read again, of 5: %+v after %d reads", got, total())
	}
	if got := at(12, 25, 5); !slices.Equal(got.To, []int{0, 1, 2, 3, 4}) || got.All || total() != 38 {
		t.Fatalf("the last stable offset went back to 12: read again from there: %+v after %d reads", got, total())
	}
}

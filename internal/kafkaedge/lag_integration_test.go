package kafkaedge_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

func total(t *testing.T, f *kafkaclient.Factory, group, topic string) int64 {
	t.Helper()
	lags, err := kafkaedge.GroupLag(context.Background(), f, group, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, l := range lags {
		sum += l.Lag
	}
	return sum
}

// TestIntegrationGroupLagRisesAndFalls: lag counts unconsumed records of a group, rises with input and
// falls with commits.
func TestIntegrationGroupLagRisesAndFalls(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "lag", 2)
	group := kafkatest.Name(t, "group")
	if got := total(t, f, group, topic); got != 0 {
		t.Fatalf("empty topic: lag %d", got)
	}
	w := f.Writer(topic)
	defer w.Close()
	var msgs []kafka.Message
	for i := 0; i < 10; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint(i)), Value: []byte("x")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if got := total(t, f, group, topic); got != 10 {
		t.Fatalf("after 10 records: lag %d, want 10", got)
	}
	cg, err := kafka.NewConsumerGroup(f.GroupConfig(group, []string{topic}))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	gen, err := kafkaclient.NextGeneration(ctx, cg)
	if err != nil {
		t.Fatal(err)
	}
	lags, err := kafkaedge.GroupLag(ctx, f, group, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	commit := map[int]int64{}
	for _, l := range lags {
		commit[l.Partition] = l.Lag // nothing committed yet, first offset 0: the lag is the end offset
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{topic: commit}); err != nil {
		t.Fatal(err)
	}
	if got := total(t, f, group, topic); got != 0 {
		t.Fatalf("after committing everything: lag %d", got)
	}
}

// TestIntegrationGroupLagEndsAtTheLastStableOffset: a read_committed group that read everything it can
// has no lag, whatever transactions sit above: an open transaction's records (not readable until it
// ends) and a finished one's markers (never records) are no lag; the records of the open transaction
// become lag once it commits.
func TestIntegrationGroupLagEndsAtTheLastStableOffset(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "txnlag", 1)
	group := kafkatest.Name(t, "group")
	p := kafkatest.NewTxnProducer(t)
	p.Begin()
	p.Send(topic, 0, "k", "committed") // offset 0, its commit marker 1
	p.Commit()
	p.Begin()
	p.Send(topic, 0, "k", "open") // offset 2, left open
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := kafkaedge.GroupOffsets(ctx, f, group, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 1 || offs[0].End != 2 || offs[0].High != 3 {
		t.Fatalf("offsets %+v: want End (last stable offset) 2 and High (high watermark) 3", offs)
	}
	cg, err := kafka.NewConsumerGroup(f.GroupConfig(group, []string{topic}))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	gen, err := kafkaclient.NextGeneration(ctx, cg)
	if err != nil {
		t.Fatal(err)
	}
	// Where a read_committed reader stands once it read the committed record: past its marker.
	if err := gen.CommitOffsets(map[string]map[int]int64{topic: {0: 2}}); err != nil {
		t.Fatal(err)
	}
	if got := total(t, f, group, topic); got != 0 {
		t.Fatalf("lag %d with only a marker and an open transaction above the committed offset, want 0", got)
	}
	p.Commit()
	if got := total(t, f, group, topic); got != 2 {
		t.Fatalf("lag %d once the transaction committed (its record and marker), want 2", got)
	}
}

package inbound_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

// produceLarge writes values to topic, all with one key (one partition), in order, with a client whose
// limits allow records of several MiB (kcat's default caps a record at 1,000,000 bytes).
func produceLarge(t *testing.T, topic, key string, values ...string) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(kafkatest.Brokers(t)...), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Hash{}, BatchBytes: 8 << 20, BatchSize: 1, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{MetadataTTL: 100 * time.Millisecond}} // its own metadata cache: the topic is new
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, v := range values { // one at a time: the order on the partition is the order given
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(key), Value: []byte(v)}); err != nil {
			t.Fatalf("produce %d bytes: %v", len(v), err)
		}
	}
}

// texts are the CCM texts in topic order.
func texts(outs []out) []string {
	var s []string
	for _, o := range outs {
		s = append(s, o.text())
	}
	return s
}

// committedNext is the group's committed offset on partition 0 of topic (-1: none).
func committedNext(t *testing.T, f *kafkaclient.Factory, group, topic string) int64 {
	t.Helper()
	// A channel topic is read by the ingest group, or by the sessions group when the fast path takes it;
	// where it is read, it is committed.
	return max(committedBy(t, f, group, topic), committedBy(t, f, group+".sessions", topic))
}

func committedBy(t *testing.T, f *kafkaclient.Factory, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.Client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == 0 {
			return p.CommittedOffset
		}
	}
	return -1
}

// largeChannel creates a one-partition connector topic whose broker limit is raised to 3 MiB.
func largeChannel(t *testing.T) (config.Config, *kafkaclient.Factory, string) {
	t.Helper()
	cfg, f := setup(t, 1)
	topic := kafkatest.InboundTopic(cfg, "big")
	kafkatest.CreateTopic(t, topic, 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(3 << 20)})
	return cfg, f, topic
}

// TestIntegrationLargeRecordDoesNotBlockItsPartition: a 2 MiB message on a channel topic whose limit
// was raised is dead-lettered as too_large, its value cut to deadLetters.maxValueBytes with its
// original size in a header, and the five messages after it on the same partition reach the CCM in
// order. (Before the stage runtime, the 2 MiB dead letter failed the writer's whole call and the
// partition retried it forever: none of the five arrived.)
func TestIntegrationLargeRecordDoesNotBlockItsPartition(t *testing.T) {
	cfg, f, topic := largeChannel(t)
	start(t, cfg, f)
	big := msg("ann", strings.Repeat("x", 2<<20))
	produceLarge(t, topic, "ann", msg("ann", "n0"), big, msg("ann", "n1"), msg("ann", "n2"), msg("ann", "n3"), msg("ann", "n4"), msg("ann", "n5"))

	ccm := kcatConsume(t, cfg.Topics.CCMInbound, 6)
	if got := strings.Join(texts(ccm), ","); got != "n0,n1,n2,n3,n4,n5" {
		t.Fatalf("CCM texts %s, want n0..n5 in order", got)
	}
	dlq := kcatConsume(t, cfg.Topics.DeadLetter, 1)
	if len(dlq) != 1 {
		t.Fatalf("want one dead letter, got %d", len(dlq))
	}
	d := dlq[0]
	if d.Headers[deadletter.HeaderCodes] != "too_large" || len(d.Value) != cfg.DeadLetters.MaxValueBytes ||
		d.Headers[deadletter.HeaderOriginalSize] != strconv.Itoa(len(big)) || d.Headers[deadletter.HeaderTruncated] != "value" {
		t.Fatalf("dead letter: codes %q, %d value bytes (want %d), original size %q (want %d), truncated %q",
			d.Headers[deadletter.HeaderCodes], len(d.Value), cfg.DeadLetters.MaxValueBytes,
			d.Headers[deadletter.HeaderOriginalSize], len(big), d.Headers[deadletter.HeaderTruncated])
	}
	if !strings.HasPrefix(big, d.Value) {
		t.Fatal("the dead letter's value must be the start of the original")
	}
	kafkatestWaitCommitted(t, f, cfg.Kafka.Consumer.GroupID, topic, 7)
}

// TestIntegrationEnrichedOutputOverflowIsDeadLettered: a valid message a hundred bytes under
// inbound.maxMessageBytes fits its channel topic, but enrichment pushes its repartition record over the
// broker's limit (1 MiB by default). It becomes a too_large dead letter naming the topic, and the
// messages after it flow.
func TestIntegrationEnrichedOutputOverflowIsDeadLettered(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(fmt.Sprint("fast_", fast), func(t *testing.T) {
			cfg, f := setup(t, 1, "web")
			cfg.Inbound.FastPath = fast
			// Through the repartition topic, the normalized record is too large for it; taken where it is,
			// the enriched record is too large for the CCM topic.
			tooLargeFor := cfg.Topics.Repartition
			if fast {
				tooLargeFor = cfg.Topics.CCMInbound
			}
			topic := kafkatest.InboundTopic(cfg, "web")
			start(t, cfg, f)
			body := msg("ann", "")
			nearLimit := msg("ann", strings.Repeat("y", cfg.Inbound.MaxMessageBytes-100-len(body)))
			if len(nearLimit) != cfg.Inbound.MaxMessageBytes-100 {
				t.Fatalf("test message is %d bytes", len(nearLimit))
			}
			produceLarge(t, topic, "a", msg("ann", "before"), nearLimit, msg("ann", "after1"), msg("ann", "after2"))

			ccm := kcatConsume(t, cfg.Topics.CCMInbound, 3)
			if got := strings.Join(texts(ccm), ","); got != "before,after1,after2" {
				t.Fatalf("CCM texts %s", got)
			}
			dlq := kcatConsume(t, cfg.Topics.DeadLetter, 1)
			d := dlq[0]
			if d.Headers[deadletter.HeaderCodes] != "too_large" || !strings.Contains(d.Headers[deadletter.HeaderDetail], tooLargeFor) {
				t.Fatalf("dead letter codes %q detail %q: want too_large naming %s", d.Headers[deadletter.HeaderCodes],
					d.Headers[deadletter.HeaderDetail], tooLargeFor)
			}
			if d.Headers[deadletter.HeaderOriginalSize] != strconv.Itoa(len(nearLimit)) {
				t.Fatalf("original size %q, want %d", d.Headers[deadletter.HeaderOriginalSize], len(nearLimit))
			}
			kafkatestWaitCommitted(t, f, cfg.Kafka.Consumer.GroupID, topic, 4)
		})
	}
}

// TestIntegrationDeadLetterWaitsForItsTopic: while the dead-letter topic does not exist, an invalid
// record's offset is not committed (the records before it are); once the topic is created the dead
// letter is written, exactly once, and the offsets move on.
func TestIntegrationDeadLetterWaitsForItsTopic(t *testing.T) {
	cfg, f := setup(t, 1, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	cfg.Topics.DeadLetter = kafkatest.Name(t, "dlq-later")
	cfg.Kafka.Consumer.BatchSize = 1 // one record per batch, so "before" settles on its own
	start(t, cfg, f)
	kcatProduce(t, topic, true, "a\t"+msg("a", "before"), "a\tnot json at all", "a\t"+msg("a", "after"))
	kafkatestWaitCommitted(t, f, cfg.Kafka.Consumer.GroupID, topic, 1)
	time.Sleep(3 * time.Second) // many retries of the dead letter
	if got := committedNext(t, f, cfg.Kafka.Consumer.GroupID, topic); got != 1 {
		t.Fatalf("committed %d while the dead letter could not be written, want 1", got)
	}
	kafkatest.CreateTopic(t, cfg.Topics.DeadLetter, 1)
	dlq := kcatConsume(t, cfg.Topics.DeadLetter, 1)
	if len(dlq) != 1 || dlq[0].Value != "not json at all" {
		t.Fatalf("want the one dead letter with the original value, got %+v", dlq)
	}
	kafkatestWaitCommitted(t, f, cfg.Kafka.Consumer.GroupID, topic, 3)
	if got := texts(kcatConsume(t, cfg.Topics.CCMInbound, 2)); strings.Join(got, ",") != "before,after" {
		t.Fatalf("CCM texts %v", got)
	}
	time.Sleep(time.Second)
	if again := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(1)); len(again) != 1 {
		t.Fatalf("the dead letter was written %d times", len(again))
	}
}

// kafkatestWaitCommitted waits (bounded) until the group committed next on partition 0 of topic.
func kafkatestWaitCommitted(t *testing.T, f *kafkaclient.Factory, group, topic string, next int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := committedNext(t, f, group, topic)
		if got == next {
			return
		}
		if time.Now().After(deadline) {
			lags, _ := kafkaedge.GroupLag(context.Background(), f, group, []string{topic})
			t.Fatalf("committed %d after 30 s, want %d (lag %+v)", got, next, lags)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

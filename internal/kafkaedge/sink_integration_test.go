package kafkaedge_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

func out(topic string, partition int, key, value string) stream.Output {
	return stream.Output{Topic: topic, Partition: partition, Key: []byte(key), Value: []byte(value), Time: time.UnixMilli(1732400000000)}
}

// write writes outs as a stage would: records refused only because a new partition's leader is not
// serving yet (right after topic creation) are written again, in order, up to 20 times.
func write(t *testing.T, s *kafkaedge.Sink, outs ...stream.Output) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := s.Write(ctx, outs)
	for attempt := 0; attempt < 20; attempt++ {
		var again []int
		for i, err := range errs {
			if err != nil && (errors.Is(err, kafka.NotLeaderForPartition) || errors.Is(err, kafka.LeaderNotAvailable) ||
				strings.Contains(err.Error(), "not sent: an earlier record")) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
		retry := make([]stream.Output, len(again))
		for j, i := range again {
			retry[j] = outs[i]
		}
		for j, err := range s.Write(ctx, retry) {
			errs[again[j]] = err
		}
	}
	return errs
}

// TestIntegrationSinkFailsOnlyTheMissingTopic: one call writes to a topic that exists and to one that
// does not; only the missing topic's records fail, and the others are on the broker (read by kcat).
func TestIntegrationSinkFailsOnlyTheMissingTopic(t *testing.T) {
	f := kafkatest.Factory(t)
	good := kafkatest.Topic(t, "good", 2)
	missing := kafkatest.Name(t, "missing")
	s := kafkaedge.NewSink(f, "test", nil)
	errs := write(t, s, out(good, stream.ByKey, "a", "g1"), out(missing, stream.ByKey, "a", "m1"),
		out(good, stream.ByKey, "b", "g2"), out(missing, stream.ByKey, "b", "m2"), out(good, stream.ByKey, "a", "g3"))
	for i, want := range []bool{true, false, true, false, true} {
		if (errs[i] == nil) != want {
			t.Errorf("record %d: error %v, want success %t", i, errs[i], want)
		}
	}
	for _, i := range []int{1, 3} {
		if errs[i] != nil && errors.Is(errs[i], stage.ErrTooLarge) {
			t.Errorf("a missing topic is retriable, not too large: %v", errs[i])
		}
	}
	recs := kafkatest.KcatConsume(t, good, kafkatest.AtLeast(3))
	var a []string
	for _, r := range recs {
		if r.Key == "a" {
			a = append(a, r.Value)
		}
	}
	if len(recs) != 3 || strings.Join(a, ",") != "g1,g3" {
		t.Fatalf("good topic holds %d records, key a = %v", len(recs), a)
	}
}

// TestIntegrationSinkIsolatesTheRecordTooLarge: on a topic limited to 4000 bytes, a chunk of one
// partition holding a 6000-byte record is refused by the broker as a whole; the sink sends the
// records one by one, so only the big one fails (ErrTooLarge) and the others land in their order. A
// record over the client's own limit fails without a request.
func TestIntegrationSinkIsolatesTheRecordTooLarge(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "limited", 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "4000"})
	s := kafkaedge.NewSink(f, "test", nil)
	small := func(i int) stream.Output { return out(topic, 0, "k", strconv.Itoa(i)+strings.Repeat("s", 900)) }
	errs := write(t, s, small(1), small(2), out(topic, 0, "k", strings.Repeat("B", 6000)), small(3), small(4),
		out(topic, 0, "k", strings.Repeat("C", 2<<20)))
	for i, tooLarge := range []bool{false, false, true, false, false, true} {
		if got := errors.Is(errs[i], stage.ErrTooLarge); got != tooLarge || (!tooLarge && errs[i] != nil) {
			t.Errorf("record %d: error %v, want too large %t", i, errs[i], tooLarge)
		}
	}
	if !strings.Contains(errs[5].Error(), "kafka.producer.batchBytes") {
		t.Errorf("the client-side refusal names the setting: %v", errs[5])
	}
	recs := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(4))
	var order []string
	for _, r := range recs {
		order = append(order, r.Value[:1])
	}
	if strings.Join(order, "") != "1234" {
		t.Fatalf("partition holds %v, want 1,2,3,4 in order", order)
	}
}

// TestIntegrationSinkPartitionsLikeTheJavaClient: records keyed by the same key land on one partition,
// the one Murmur2 (the Java client's partitioner) picks, and explicit partitions are kept.
func TestIntegrationSinkPartitionsLikeTheJavaClient(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "parts", 6)
	s := kafkaedge.NewSink(f, "test", nil)
	var outs []stream.Output
	for i := range 30 {
		outs = append(outs, out(topic, stream.ByKey, "customer-"+strconv.Itoa(i%5), strconv.Itoa(i)))
	}
	outs = append(outs, out(topic, 4, "customer-0", "explicit"))
	for i, err := range write(t, s, outs...) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	parts := []int{0, 1, 2, 3, 4, 5}
	for _, r := range kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(31)) {
		want := (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(r.Key)}, parts...)
		if r.Value == "explicit" {
			want = 4
		}
		if r.Partition != want {
			t.Errorf("%s/%s on partition %d, want %d", r.Key, r.Value, r.Partition, want)
		}
	}
}

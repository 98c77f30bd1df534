package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// rec is a record for topic's partition whose value is value.
func rec(topic string, partition int, value string) stream.Output {
	return stream.Output{Topic: topic, Partition: partition, Key: []byte("k"), Value: []byte(value), Time: time.UnixMilli(1732400000000)}
}

func writeAll(t *testing.T, s *Sink, outs ...stream.Output) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := s.Write(ctx, outs)
	if len(errs) != len(outs) {
		t.Fatalf("%d errors for %d records", len(errs), len(outs))
	}
	return errs
}

func wantSent(t *testing.T, c *fakeCluster, want ...string) {
	t.Helper()
	got := c.sent()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("requests sent:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantNil(t *testing.T, errs []error, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if errs[i] != nil {
			t.Errorf("record %d: %v, want acknowledged", i, errs[i])
		}
	}
}

// Records of six partitions of two topics, led by two brokers, go in one request per broker, each
// partition's records in their order; the throttle time the responses name is counted.
func TestSinkSendsOneRequestPerBroker(t *testing.T) {
	c := newFakeCluster(map[string][]int32{"a": {1, 2, 1, 2}, "b": {2, 1}})
	c.throttle = 5
	before := kafkaclient.ThrottleTotals()["produce"].Responses
	errs := writeAll(t, c.sink(100, 1<<20), rec("a", 0, "x1"), rec("a", 1, "y1"), rec("b", 0, "z1"), rec("a", 2, "x2"),
		rec("b", 1, "w1"), rec("a", 3, "y2"), rec("a", 0, "x3"))
	wantNil(t, errs, 0, 1, 2, 3, 4, 5, 6)
	wantSent(t, c, "1:a/0=x1,x3 a/2=x2 b/1=w1", "2:a/1=y1 a/3=y2 b/0=z1")
	if got := kafkaclient.ThrottleTotals()["produce"].Responses - before; got < 2 {
		t.Errorf("%d throttled produce responses counted, want 2", got)
	}
}

// A partition whose response names an error fails only its own records: its later chunk is not
// attempted, and the other partitions (same broker and other broker) are acknowledged, a chunk per
// partition and request.
func TestSinkPartitionErrorFailsOnlyThatPartition(t *testing.T) {
	c := newFakeCluster(map[string][]int32{"t": {1, 1, 2}})
	c.answer = func(_ int32, _ string, partition int32, _ []string) int16 {
		if partition == 0 {
			return int16(kafka.NotEnoughReplicas)
		}
		return 0
	}
	errs := writeAll(t, c.sink(2, 1<<20), rec("t", 0, "a1"), rec("t", 1, "b1"), rec("t", 0, "a2"), rec("t", 2, "c1"),
		rec("t", 0, "a3"), rec("t", 1, "b2"), rec("t", 2, "c2"), rec("t", 0, "a4"), rec("t", 1, "b3"), rec("t", 2, "c3"))
	for _, i := range []int{0, 2} {
		if !errors.Is(errs[i], kafka.NotEnoughReplicas) || stage.Final(errs[i]) {
			t.Errorf("record %d: %v, want a retryable NotEnoughReplicas", i, errs[i])
		}
	}
	for _, i := range []int{4, 7} {
		var na errNotAttempted
		if !errors.As(errs[i], &na) || !errors.Is(errs[i], kafka.NotEnoughReplicas) {
			t.Errorf("record %d: %v, want not attempted", i, errs[i])
		}
	}
	wantNil(t, errs, 1, 3, 5, 6, 8, 9)
	wantSent(t, c, "1:t/0=a1,a2 t/1=b1,b2", "2:t/2=c1,c2", "1:t/1=b3", "2:t/2=c3")
	if got := c.log("t", 1) + " " + c.log("t", 2); got != "b1,b2,b3 c1,c2,c3" {
		t.Errorf("partitions 1 and 2 hold %s", got)
	}
}

// A leader that moves during a call answers NOT_LEADER for its partition: that partition's records
// fail retryably (the later chunk not attempted), the sink forgets the topic's leaders, and the
// caller's retry goes to the new leader, together with the partition already there, in order.
func TestSinkLeaderMoveRetriedInOrder(t *testing.T) {
	c := newFakeCluster(map[string][]int32{"t": {1, 2}})
	c.answer = func(broker int32, topic string, partition int32, _ []string) int16 {
		if broker == 1 && partition == 0 {
			c.leaders[topic][0] = 2 // called under the fake's lock
			return int16(kafka.NotLeaderForPartition)
		}
		return 0
	}
	s := c.sink(2, 1<<20)
	outs := []stream.Output{rec("t", 0, "a1"), rec("t", 1, "b1"), rec("t", 0, "a2"), rec("t", 0, "a3"), rec("t", 1, "b2")}
	errs := writeAll(t, s, outs...)
	for _, i := range []int{0, 2, 3} {
		if !errors.Is(errs[i], kafka.NotLeaderForPartition) || stage.Final(errs[i]) {
			t.Errorf("record %d: %v, want a retryable NOT_LEADER", i, errs[i])
		}
	}
	wantNil(t, errs, 1, 4)
	wantSent(t, c, "1:t/0=a1,a2", "2:t/1=b1,b2")
	errs = writeAll(t, s, outs[0], outs[2], outs[3], rec("t", 1, "b3"))
	wantNil(t, errs, 0, 1, 2, 3)
	wantSent(t, c, "1:t/0=a1,a2", "2:t/1=b1,b2", "2:t/0=a1,a2 t/1=b3", "2:t/0=a3")
	if got := c.log("t", 0) + " " + c.log("t", 1); got != "a1,a2,a3 b1,b2,b3" {
		t.Errorf("partitions hold %s", got)
	}
}

// Leaders cached by the sink that the transport no longer agrees with make it refuse the request
// ("mismatching leaders") before sending: the sink reads the leaders again and sends the records to
// them in the same call; a refusal that persists fails the records retryably after one new attempt.
func TestSinkMismatchingLeadersRerouted(t *testing.T) {
	c := newFakeCluster(map[string][]int32{"t": {1, 2, 2}})
	s := c.sink(10, 1<<20)
	wantNil(t, writeAll(t, s, rec("t", 0, "a1")), 0)
	c.setLeader("t", 1, 1)
	wantNil(t, writeAll(t, s, rec("t", 1, "b1"), rec("t", 2, "c1"), rec("t", 1, "b2")), 0, 1, 2)
	wantSent(t, c, "1:t/0=a1", "1:t/1=b1,b2", "2:t/2=c1")
	if got := c.log("t", 1); got != "b1,b2" {
		t.Errorf("partition 1 holds %s", got)
	}
	c.mismatch = true
	for i, err := range writeAll(t, s, rec("t", 1, "b3"), rec("t", 2, "c2")) {
		if err == nil || stage.Final(err) || !strings.Contains(err.Error(), "mismatching leaders") {
			t.Errorf("record %d: %v, want a retryable mismatch", i, err)
		}
	}
}

// A record over the client's batch limit fails alone without a request; a chunk the broker finds too
// large is sent again record by record, so only the record that does not fit fails (ErrTooLarge), a
// record the broker refuses for its timestamp fails for good (ErrRefused), and the others land in
// order.
func TestSinkTooLargeFailsAlone(t *testing.T) {
	c := newFakeCluster(map[string][]int32{"t": {1}})
	c.answer = func(_ int32, _ string, _ int32, values []string) int16 {
		for _, v := range values {
			if strings.HasPrefix(v, "BIG") {
				return int16(kafka.MessageSizeTooLarge)
			}
		}
		for _, v := range values {
			if strings.HasPrefix(v, "BADTS") {
				return int16(kafka.InvalidTimestamp)
			}
		}
		return 0
	}
	big := "BIG" + strings.Repeat("x", 500)
	errs := writeAll(t, c.sink(10, 1000), rec("t", 0, "s1"), rec("t", 0, "s2"), rec("t", 0, big), rec("t", 0, "s3"),
		rec("t", 0, strings.Repeat("H", 2000)), rec("t", 0, "BADTS"), rec("t", 0, "s4"))
	wantNil(t, errs, 0, 1, 3, 6)
	for _, i := range []int{2, 4} {
		if !errors.Is(errs[i], stage.ErrTooLarge) {
			t.Errorf("record %d: %v, want too large", i, errs[i])
		}
	}
	if errs[4] == nil || !strings.Contains(errs[4].Error(), "kafka.producer.batchBytes") {
		t.Errorf("the client-side refusal names the setting: %v", errs[4])
	}
	if !errors.Is(errs[5], stage.ErrRefused) {
		t.Errorf("record 5: %v, want refused", errs[5])
	}
	if got := c.log("t", 0); got != "s1,s2,s3,s4" {
		t.Errorf("partition holds %s", got)
	}
	if got := len(c.sent()); got != 7 {
		t.Errorf("%d requests, want 7 (the chunk, then its 6 records one by one)", got)
	}
}

// A topic whose metadata fails fails only its own records; the others go in one request per broker.
func TestSinkTopicWithoutMetadataFailsAlone(t *testing.T) {
	c := newFakeCluster(map[string][]int32{"good": {1, 2}})
	errs := writeAll(t, c.sink(10, 1<<20), rec("good", 0, "g1"), rec("missing", 0, "m1"), rec("good", 1, "g2"),
		rec("missing", 1, "m2"), rec("good", 0, "g3"))
	wantNil(t, errs, 0, 2, 4)
	for _, i := range []int{1, 3} {
		if !errors.Is(errs[i], kafka.UnknownTopicOrPartition) || stage.Final(errs[i]) {
			t.Errorf("record %d: %v, want a retryable unknown topic", i, errs[i])
		}
	}
	wantSent(t, c, "1:good/0=g1,g3", "2:good/1=g2")
}

// One leader's chunks that exceed the request bound together go in several requests of the same round,
// each under the bound (a broker closes the connection on a request above socket.request.max.bytes, and
// such a request, retried, would fail for good); every record still lands once, in order.
func TestSinkRequestsStayUnderTheRequestBound(t *testing.T) {
	const partitions = 24
	leaders := make([]int32, partitions)
	for i := range leaders {
		leaders[i] = 1
	}
	c := newFakeCluster(map[string][]int32{"a": leaders})
	value := strings.Repeat("v", 1<<20) // 24 partitions × 1 MiB: 24 MiB for one broker
	var outs []stream.Output
	for p := range partitions {
		outs = append(outs, rec("a", p, value))
	}
	s := c.sink(100, 1<<20+1024)
	for i, err := range writeAll(t, s, outs...) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.requests) < 2 {
		t.Fatalf("%d request(s) for 24 MiB, want several under %d bytes", len(c.requests), s.requestBytes())
	}
	for i, r := range c.requests {
		bytes := 0
		for _, vs := range r.parts {
			for _, v := range vs {
				bytes += len(v)
			}
		}
		if bytes > s.requestBytes() {
			t.Errorf("request %d holds %d bytes of values, over the bound %d", i, bytes, s.requestBytes())
		}
	}
	for p := range partitions {
		if got := len(c.logs[fmt.Sprintf("a/%d", p)]); got != 1 {
			t.Errorf("partition %d holds %d records, want 1", p, got)
		}
	}
}

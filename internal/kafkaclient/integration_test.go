package kafkaclient_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// TestIntegrationProduceConsumeThroughGroup writes keyed records with headers using the project's writer
// and reads them back through a consumer group generation with per-partition readers, as the pipelines do.
func TestIntegrationProduceConsumeThroughGroup(t *testing.T) {
	f := kafkatest.Factory(t)
	topic := kafkatest.Topic(t, "roundtrip", 3)
	group := kafkatest.Name(t, "group")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const keys, perKey = 12, 25
	w := f.Writer(topic)
	defer w.Close()
	var msgs []kafka.Message
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			msgs = append(msgs, kafka.Message{
				Key:     []byte(fmt.Sprintf("customer-%d", k)),
				Value:   []byte(fmt.Sprintf("%d", i)),
				Headers: []kafka.Header{{Key: "seq", Value: []byte(fmt.Sprintf("%d", i))}},
			})
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}

	cg, err := kafka.NewConsumerGroup(f.GroupConfig(group, []string{topic}))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	gen, err := kafkaclient.NextGeneration(ctx, cg)
	if err != nil {
		t.Fatalf("join group: %v", err)
	}
	assigned := gen.Assignments[topic]
	if len(assigned) != 3 {
		t.Fatalf("one member should own all 3 partitions, got %d", len(assigned))
	}

	got := map[string][]string{}    // key → values in read order
	partitionOf := map[string]int{} // key → partition
	commits := map[int]int64{}
	total := 0
	for _, a := range assigned {
		if a.Offset != kafka.FirstOffset {
			t.Fatalf("partition %d of a new group should start at the first offset, got %d", a.ID, a.Offset)
		}
		r, err := f.PartitionReader(topic, a.ID, kafka.FirstOffset)
		if err != nil {
			t.Fatal(err)
		}
		lastCtx, lastCancel := context.WithTimeout(ctx, 5*time.Second)
		for {
			m, err := r.FetchMessage(lastCtx)
			if err != nil {
				t.Fatalf("partition %d: %v after %d records", a.ID, err, total)
			}
			key := string(m.Key)
			if p, ok := partitionOf[key]; ok && p != m.Partition {
				t.Errorf("key %s on partitions %d and %d: the balancer must keep a key on one partition", key, p, m.Partition)
			}
			partitionOf[key] = m.Partition
			if len(m.Headers) != 1 || m.Headers[0].Key != "seq" || string(m.Headers[0].Value) != string(m.Value) {
				t.Errorf("header lost or changed on %s: %v", key, m.Headers)
			}
			got[key] = append(got[key], string(m.Value))
			commits[m.Partition] = m.Offset + 1
			total++
			if m.Offset+1 >= m.HighWaterMark {
				break // caught up with this partition
			}
		}
		lastCancel()
		_ = r.Close()
	}
	if total != keys*perKey {
		t.Fatalf("read %d records, want %d", total, keys*perKey)
	}
	for k, values := range got {
		for i, v := range values {
			if v != fmt.Sprint(i) {
				t.Fatalf("key %s: position %d holds %s: per-partition order broken (%v)", k, i, v, values)
			}
		}
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{topic: commits}); err != nil {
		t.Fatalf("commit: %v", err)
	}
	resp, err := f.Client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var committed []int64
	var sum int64
	for _, p := range resp.Topics[topic] {
		committed = append(committed, p.CommittedOffset)
		sum += p.CommittedOffset
	}
	sort.Slice(committed, func(i, j int) bool { return committed[i] < committed[j] })
	if sum != keys*perKey {
		t.Fatalf("committed offsets %v add up to %d, want %d", committed, sum, keys*perKey)
	}
}

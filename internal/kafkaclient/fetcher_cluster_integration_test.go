//go:build cluster

package kafkaclient_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// On a three-node cluster, readers of 6 partitions led by different nodes send one fetch request per
// leader and round (not one per partition); when a leader stops (controlled shutdown: its leaderships
// move), the readers go on at the new leaders and read every record written after.
//
//	go test -tags cluster -count=1 -run TestIntegrationClusterFetch ./internal/kafkaclient/
func TestIntegrationClusterFetchOneRequestPerBroker(t *testing.T) {
	began := time.Now()
	cl := kafkatest.StartCluster(t)
	t.Logf("three-node cluster %v ready after %v", cl.Addrs, time.Since(began).Round(100*time.Millisecond))
	cfg := config.Default()
	cfg.Kafka.Brokers = cl.Addrs
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const partitions = 6
	topic := kafkatest.Name(t, "fetchperbroker")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resp, err := f.Client().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 3}}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int]bool{}
	for p := range partitions {
		leaders[cl.Leader(t, topic, p)] = true
	}
	if len(leaders) < 2 {
		t.Fatalf("the 6 partitions are led by %d node(s); the test needs several", len(leaders))
	}
	rs := readers(t, f, []string{topic}, partitions, 0)
	var polls []*polled
	var stops []func()
	for _, r := range rs {
		p, stop := poll(ctx, r)
		polls, stops = append(polls, p), append(stops, stop)
	}
	w := f.Writer(topic)
	defer w.Close()
	w.Balancer = kafka.BalancerFunc(func(m kafka.Message, _ ...int) int { return m.Partition })
	write := func(round int) int {
		for p := range partitions {
			for i := range 5 {
				if err := w.WriteMessages(ctx, kafka.Message{Partition: p, Value: []byte(fmt.Sprint(round, "-", i))}); err != nil {
					t.Fatalf("write round %d to %d: %v", round, p, err)
				}
			}
		}
		return partitions * 5
	}
	total := func() (n int) {
		for _, p := range polls {
			n += p.count()
		}
		return n
	}
	want := write(0)
	if !waitFor(30*time.Second, func() bool { return total() == want }) {
		t.Fatalf("read %d of %d records", total(), want)
	}

	time.Sleep(300 * time.Millisecond) // every reader in its long poll again
	before := kafkaclient.RequestTotals()["Fetch"]
	const window = 2 * time.Second
	time.Sleep(window)
	requests := kafkaclient.RequestTotals()["Fetch"] - before
	rounds := int64(window / cfg.Kafka.Consumer.MaxWait)
	t.Logf("%d fetch requests in %d rounds for %d idle partitions led by %d nodes", requests, rounds, partitions, len(leaders))
	if limit := rounds * int64(len(leaders)) * 3 / 2; requests > limit {
		t.Errorf("%d fetch requests in %d rounds, want about one per leader and round (%d)", requests, rounds, rounds*int64(len(leaders)))
	}

	moved := cl.Leader(t, topic, 0)
	cl.Stop(t, moved)
	t.Logf("node %d stopped; partition 0 now led by %d", moved, cl.LeaderNot(t, topic, 0, moved))
	want += write(1)
	if !waitFor(60*time.Second, func() bool { return total() == want }) {
		t.Errorf("read %d of %d records after the leader change", total(), want)
	}
	cancel()
	for _, stop := range stops {
		stop()
	}
	for i, p := range polls {
		for j, m := range p.recs {
			if m.Offset != int64(j) {
				t.Fatalf("partition %d: record %d at offset %d", i, j, m.Offset)
			}
		}
		if p.err != nil {
			t.Logf("partition %d: first error during the leader change: %v", i, p.err)
		}
	}
}

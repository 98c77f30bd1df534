//go:build cluster

package kafkaedge_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
)

// TestIntegrationClusterSinkOneRequestPerBroker: on a three-node cluster, one Write of 12 records to
// each of 6 partitions led by different nodes, in chunks of 5, sends one produce request per leader
// and round (3 rounds: 5, 5, 2 records a partition), counted by kafkaclient.RequestTotals; kcat then
// reads every partition from outside: each holds its 12 records once, in order.
func TestIntegrationClusterSinkOneRequestPerBroker(t *testing.T) {
	began := time.Now()
	cl := kafkatest.StartCluster(t)
	t.Logf("three-node cluster %v ready after %v", cl.Addrs, time.Since(began).Round(100*time.Millisecond))
	cfg := config.Default()
	cfg.Kafka.Brokers = cl.Addrs
	cfg.Kafka.Producer.BatchSize = 5
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const partitions, perPartition = 6, 12
	topic := kafkatest.Name(t, "perbroker")
	createReplicated(t, f.Client(), topic, partitions)
	leaders := map[int]bool{}
	for p := range partitions {
		leaders[cl.Leader(t, topic, p)] = true
	}
	if len(leaders) < 2 {
		t.Fatalf("the 6 partitions are led by %d node(s); the test needs several", len(leaders))
	}
	s := kafkaedge.NewSink(f, "test", nil)
	var warm []stream.Output
	for p := range partitions {
		warm = append(warm, out(topic, p, "k", "warm"))
	}
	for i, err := range write(t, s, warm...) { // leaders serving, the sink's metadata the transport's
		if err != nil {
			t.Fatalf("warm-up record %d: %v", i, err)
		}
	}
	var outs []stream.Output
	for seq := range perPartition {
		for p := range partitions {
			outs = append(outs, out(topic, p, "k", fmt.Sprintf("%d-%02d", p, seq)))
		}
	}
	before := kafkaclient.RequestTotals()["Produce"]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	errs := s.Write(ctx, outs)
	cancel()
	sent := kafkaclient.RequestTotals()["Produce"] - before
	for i, err := range errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if want := int64(3 * len(leaders)); sent != want {
		t.Errorf("%d produce requests for 3 rounds over %d leaders, want %d", sent, len(leaders), want)
	}
	t.Logf("%d produce requests for %d records on %d partitions led by %d nodes", sent, len(outs), partitions, len(leaders))
	checkPartitions(t, kafkatest.KcatConsumeFrom(t, cl.Addrs, topic, kafkatest.AtLeast(partitions*(perPartition+1))), partitions, perPartition)
}

// checkPartitions: each partition holds its records p-00 .. p-(n-1) once, in offset order, after the
// warm-up record(s).
func checkPartitions(t *testing.T, recs []kafkatest.KcatRecord, partitions, n int) {
	t.Helper()
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	got := map[int][]string{}
	for _, r := range recs {
		if r.Value != "warm" {
			got[r.Partition] = append(got[r.Partition], r.Value)
		}
	}
	for p := range partitions {
		var want []string
		for seq := range n {
			want = append(want, fmt.Sprintf("%d-%02d", p, seq))
		}
		if g, w := strings.Join(got[p], ","), strings.Join(want, ","); g != w {
			t.Errorf("partition %d holds %s, want %s", p, g, w)
		}
	}
}

// createReplicated creates topic with replication factor 3 (bounded retries while the cluster settles).
func createReplicated(t *testing.T, client *kafka.Client, topic string, partitions int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic: topic, NumPartitions: partitions, ReplicationFactor: 3,
		}}})
		cancel()
		if err == nil {
			err = resp.Errors[topic]
		}
		if err == nil {
			return
		}
		if attempt == 5 {
			t.Fatalf("create topic %s: %v", topic, err)
		}
		time.Sleep(time.Duration(attempt) * 300 * time.Millisecond)
	}
}

package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	meta "github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/cimstream/cimstream/internal/config"
)

// fakeCluster is a kafka.RoundTripper that plays brokers at the protocol level: it answers Metadata
// from its layout and routes each Produce request as kafka-go's Transport does, to the one leader of
// every partition it names ("mismatching leaders" otherwise). It keeps each partition's log.
type fakeCluster struct {
	mu      sync.Mutex
	leaders map[string][]int32 // topic → leader per partition; a topic absent is unknown
	// answer is the error code for one partition of one request (its values), 0 for success.
	answer   func(broker int32, topic string, partition int32, values []string) int16
	throttle int32
	mismatch bool // every produce request refused as the transport does when leaders differ
	requests []fakeRequest
	logs     map[string][]string // "topic/partition" → values acknowledged, in order
}

// fakeRequest is one produce request as the broker received it.
type fakeRequest struct {
	broker int32
	parts  map[string][]string // "topic/partition" → values
}

func newFakeCluster(leaders map[string][]int32) *fakeCluster {
	return &fakeCluster{leaders: leaders, logs: map[string][]string{}}
}

// sink is a sink on the fake: metadata cached a minute, so only forget re-reads it.
func (c *fakeCluster) sink(batchSize, batchBytes int) *Sink {
	client := &kafka.Client{Addr: kafka.TCP("127.0.0.1:9"), Timeout: 5 * time.Second, Transport: c}
	p := config.Producer{BatchSize: batchSize, BatchBytes: int64(batchBytes), WriteTimeout: 5 * time.Second}
	return newSink(client, "test", p, time.Minute, nil)
}

func (c *fakeCluster) RoundTrip(_ context.Context, _ net.Addr, req protocol.Message) (protocol.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m := req.(type) {
	case *meta.Request:
		return c.metadata(m), nil
	case *produce.Request:
		return c.produce(m)
	}
	return nil, fmt.Errorf("fake cluster: unexpected %T", req)
}

func (c *fakeCluster) metadata(m *meta.Request) *meta.Response {
	resp := &meta.Response{Brokers: []meta.ResponseBroker{{NodeID: 1, Host: "127.0.0.1", Port: 9}, {NodeID: 2, Host: "127.0.0.1", Port: 10}}}
	for _, name := range m.TopicNames {
		leaders, ok := c.leaders[name]
		if !ok {
			resp.Topics = append(resp.Topics, meta.ResponseTopic{Name: name, ErrorCode: int16(kafka.UnknownTopicOrPartition)})
			continue
		}
		t := meta.ResponseTopic{Name: name}
		for p, l := range leaders {
			t.Partitions = append(t.Partitions, meta.ResponsePartition{PartitionIndex: int32(p), LeaderID: l})
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (c *fakeCluster) produce(m *produce.Request) (protocol.Message, error) {
	if m.Acks != -1 {
		return nil, fmt.Errorf("fake cluster: acks %d, want -1 (all)", m.Acks)
	}
	broker, err := c.route(m)
	if err != nil {
		return nil, err
	}
	got := fakeRequest{broker: broker, parts: map[string][]string{}}
	resp := &produce.Response{ThrottleTimeMs: c.throttle}
	for _, t := range m.Topics {
		rt := produce.ResponseTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			key := fmt.Sprintf("%s/%d", t.Topic, p.Partition)
			if _, twice := got.parts[key]; twice {
				return nil, fmt.Errorf("fake cluster: two batches for %s in one request", key)
			}
			values, err := readValues(p.RecordSet.Records)
			if err != nil {
				return nil, err
			}
			got.parts[key] = values
			code := int16(0)
			if c.answer != nil {
				code = c.answer(broker, t.Topic, p.Partition, values)
			}
			if code == 0 {
				c.logs[key] = append(c.logs[key], values...)
			}
			rt.Partitions = append(rt.Partitions, produce.ResponsePartition{Partition: p.Partition, ErrorCode: code})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	c.requests = append(c.requests, got)
	return resp, nil
}

// route is the one leader of the request's partitions, as kafka-go's Transport finds it.
func (c *fakeCluster) route(m *produce.Request) (int32, error) {
	if c.mismatch {
		return 0, produce.NewError(errors.New("mismatching leaders (1!=2)"))
	}
	broker := int32(-1)
	for _, t := range m.Topics {
		for _, p := range t.Partitions {
			leaders := c.leaders[t.Topic]
			if int(p.Partition) >= len(leaders) {
				return 0, produce.NewError(errors.New("topic partition not found"))
			}
			if l := leaders[p.Partition]; broker < 0 {
				broker = l
			} else if l != broker {
				return 0, produce.NewError(fmt.Errorf("mismatching leaders (%d!=%d)", l, broker))
			}
		}
	}
	return broker, nil
}

func readValues(r protocol.RecordReader) ([]string, error) {
	var out []string
	for {
		rec, err := r.ReadRecord()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(rec.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
}

// setLeader moves a partition's leadership.
func (c *fakeCluster) setLeader(topic string, partition int, broker int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaders[topic][partition] = broker
}

// sent is the requests so far, each as "broker:topic/partition=v,v topic/partition=v" (sorted).
func (c *fakeCluster) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.requests {
		var parts []string
		for k, v := range r.parts {
			parts = append(parts, k+"="+strings.Join(v, ","))
		}
		sort.Strings(parts)
		out = append(out, fmt.Sprintf("%d:%s", r.broker, strings.Join(parts, " ")))
	}
	return out
}

func (c *fakeCluster) log(topic string, partition int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.logs[fmt.Sprintf("%s/%d", topic, partition)], ",")
}

package kafkaedge

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stream"
)

// Sink writes records with acks=all and reports an error per record. Like the Java producer it sends
// one produce request per broker: a call's records are grouped by partition leader, and each round
// sends every broker one request holding the next chunk of each of its partitions (Kafka takes one
// batch per partition and request), the brokers in parallel, until every partition is done or failed.
// It does what kafka-go's Writer cannot for a stage runtime:
//   - a record larger than the client's batch limit fails alone (stage.ErrTooLarge), where the Writer
//     fails the whole call with MessageTooLargeError;
//   - a topic whose metadata or leader cannot be reached fails only its own records;
//   - the broker's "too large" for a chunk of several records is retried record by record, so only the
//     record that does not fit fails;
//   - within a partition, chunks are sent one after the other and the first failure stops the
//     partition's later records (not attempted), so a retry never lands a later record before an
//     earlier one.
//
// Partitions are chosen here with the Java client's Murmur2 partitioner (kafka-go's Murmur2Balancer),
// so a record keyed by conversationId lands where a Java producer (the CCM, Kafka Streams) would put it.
type Sink struct {
	client      *kafka.Client
	stage       string
	batchBytes  int
	batchSize   int
	compression kafka.Compression
	timeout     time.Duration
	ttl         time.Duration
	stats       *Stats
	roundRobin  atomic.Uint32

	mu      sync.Mutex
	leaders map[string]topicLeaders
}

type topicPartition struct {
	topic     string
	partition int
}

type topicLeaders struct {
	leaders []int // node id per partition, -1: no leader
	at      time.Time
}

// Record framing in a v2 record batch: the batch header, and the most a record adds beyond its key,
// value and headers (length, attributes, deltas, key and value lengths, header count as varints), plus
// two varints per header.
const (
	batchOverhead  = 61
	recordOverhead = 40
	headerOverhead = 10
)

// NewSink returns a sink for stage; stats may be nil.
func NewSink(factory *kafkaclient.Factory, stageName string, stats *Stats) *Sink {
	return newSink(factory.Client(), stageName, factory.Producer(), factory.MetadataTTL(), stats)
}

// newSink is NewSink on any client (a test's protocol-level fake).
func newSink(client *kafka.Client, stageName string, p config.Producer, ttl time.Duration, stats *Stats) *Sink {
	return &Sink{
		client: client, stage: stageName, batchBytes: int(p.BatchBytes), batchSize: max(1, p.BatchSize),
		compression: kafkaclient.Compression(p.Compression), timeout: p.WriteTimeout, ttl: ttl,
		stats: stats, leaders: map[string]topicLeaders{},
	}
}

// RecordSize is the bytes a record takes in a produce request, at most.
func RecordSize(o stream.Output) int {
	return o.Size() + recordOverhead + headerOverhead*len(o.Headers)
}

// errNotAttempted marks records not sent because an earlier record of their partition failed.
type errNotAttempted struct{ cause error }

func (e errNotAttempted) Error() string {
	return "not sent: an earlier record of the partition failed: " + e.cause.Error()
}
func (e errNotAttempted) Unwrap() error { return e.cause }

// partitionOf is the explicit partition of o, or the one its key (HashKey, else Key) hashes to;
// records without a key are spread round-robin.
func (s *Sink) partitionOf(o stream.Output, n int) int {
	if o.Partition >= 0 {
		return o.Partition % n // the topic shrank: never happens with managed topics
	}
	key := o.HashKey
	if key == nil {
		key = o.Key
	}
	if key == nil {
		return int(s.roundRobin.Add(1) % uint32(n))
	}
	return HomePartition(key, n)
}

// HomePartition is the partition of n that key hashes to with the Java client's default partitioner
// (Murmur2, kafka-go's Murmur2Balancer): where a Java or kafka-go producer keying by key puts a record.
func HomePartition(key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return murmur.Balance(kafka.Message{Key: key}, parts...)
}

var murmur kafka.Murmur2Balancer

// partitions is topic's leader per partition (-1: none), cached for the metadata TTL. The client's
// Metadata answers from its transport's cache, the one the transport routes produce requests by, so
// requests grouped by these leaders go where the transport sends them until its next refresh.
func (s *Sink) partitions(ctx context.Context, topic string) ([]int, error) {
	s.mu.Lock()
	c, ok := s.leaders[topic]
	s.mu.Unlock()
	if ok && time.Since(c.at) < s.ttl {
		return c.leaders, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	md, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, kafkaclient.Explain(fmt.Errorf("metadata of %s: %w", topic, err))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			return nil, fmt.Errorf("metadata of %s: no partitions", topic)
		}
		leaders := leadersOf(t.Partitions)
		s.mu.Lock()
		s.leaders[topic] = topicLeaders{leaders: leaders, at: time.Now()}
		s.mu.Unlock()
		return leaders, nil
	}
	return nil, fmt.Errorf("metadata of %s: %w", topic, kafka.UnknownTopicOrPartition)
}

// leadersOf is the leader's node id of each partition, -1 where there is none.
func leadersOf(parts []kafka.Partition) []int {
	leaders := make([]int, len(parts))
	for i := range leaders {
		leaders[i] = -1
	}
	for _, p := range parts {
		if p.ID >= 0 && p.ID < len(leaders) && p.Leader.Host != "" { // kafka-go: no leader is a zero Broker
			leaders[p.ID] = p.Leader.ID
		}
	}
	return leaders
}

func (s *Sink) forget(topic string) {
	s.mu.Lock()
	delete(s.leaders, topic)
	s.mu.Unlock()
}

package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// Sink writes records with acks=all, one produce request per partition and chunk, and reports an error
// per record. It does what kafka-go's Writer cannot for a stage runtime:
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

	mu     sync.Mutex
	counts map[string]partitionCount
}

type partitionCount struct {
	n  int
	at time.Time
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
	p := factory.Producer()
	return &Sink{
		client: factory.Client(), stage: stageName, batchBytes: int(p.BatchBytes), batchSize: max(1, p.BatchSize),
		compression: kafkaclient.Compression(p.Compression), timeout: p.WriteTimeout, ttl: factory.MetadataTTL(),
		stats: stats, counts: map[string]partitionCount{},
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

// Write implements stage.Sink.
func (s *Sink) Write(ctx context.Context, outputs []stream.Output) []error {
	errs := make([]error, len(outputs))
	type tp struct {
		topic     string
		partition int
	}
	groups := map[tp][]int{}
	var order []tp
	type lookup struct {
		n   int
		err error
	}
	counts := map[string]lookup{} // one lookup per topic and call: a later record never gets a partition an earlier one failed to get
	for i, o := range outputs {
		if size := RecordSize(o) + batchOverhead; size > s.batchBytes {
			errs[i] = fmt.Errorf("%d bytes exceed kafka.producer.batchBytes (%d): %w", size, s.batchBytes, stage.ErrTooLarge)
			continue
		}
		l, ok := counts[o.Topic]
		if !ok {
			l.n, l.err = s.partitions(ctx, o.Topic)
			counts[o.Topic] = l
		}
		n, err := l.n, l.err
		if err != nil {
			errs[i] = err
			continue
		}
		k := tp{o.Topic, s.partitionOf(o, n)}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	var wg sync.WaitGroup
	for _, k := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.writePartition(ctx, k.topic, k.partition, outputs, groups[k], errs)
		}()
	}
	wg.Wait()
	return errs
}

// writePartition sends the records idx of one partition in chunks, one after the other.
func (s *Sink) writePartition(ctx context.Context, topic string, partition int, outputs []stream.Output, idx []int, errs []error) {
	for len(idx) > 0 {
		n, bytes := 0, batchOverhead
		for n < len(idx) && n < s.batchSize {
			size := RecordSize(outputs[idx[n]])
			if n > 0 && bytes+size > s.batchBytes {
				break
			}
			bytes += size
			n++
		}
		chunk := idx[:n]
		err := s.produce(ctx, topic, partition, outputs, chunk, bytes)
		switch {
		case err == nil:
			idx = idx[n:]
			continue
		case stage.Final(err) && len(chunk) > 1:
			// The broker measures the whole batch against max.message.bytes: send these one by one, so
			// only a record that does not fit on its own fails.
			for j, i := range chunk {
				err := s.produce(ctx, topic, partition, outputs, chunk[j:j+1], RecordSize(outputs[i])+batchOverhead)
				if err != nil && !stage.Final(err) {
					s.failFrom(chunk[j:], idx[n:], err, errs)
					return
				}
				errs[i] = err
			}
			idx = idx[n:]
		case stage.Final(err):
			errs[chunk[0]] = err
			idx = idx[n:]
		default:
			s.failFrom(chunk, idx[n:], err, errs)
			return
		}
	}
}

// failFrom records err for failed and "not attempted" for the partition's records after them.
func (s *Sink) failFrom(failed, rest []int, err error, errs []error) {
	for _, i := range failed {
		errs[i] = err
	}
	for _, i := range rest {
		errs[i] = errNotAttempted{err}
	}
}

// produce sends one chunk and waits for acks=all.
func (s *Sink) produce(ctx context.Context, topic string, partition int, outputs []stream.Output, idx []int, bytes int) error {
	records := make([]kafka.Record, len(idx))
	for j, i := range idx {
		o := outputs[i]
		r := kafka.Record{Time: o.Time, Key: kafka.NewBytes(o.Key), Value: kafka.NewBytes(o.Value)}
		if o.Value == nil {
			r.Value = nil // a tombstone
		}
		if o.Key == nil {
			r.Key = nil
		}
		if len(o.Headers) > 0 {
			r.Headers = make([]kafka.Header, len(o.Headers))
			for h, hd := range o.Headers {
				r.Headers[h] = kafka.Header{Key: hd.Key, Value: hd.Value}
			}
		}
		records[j] = r
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	resp, err := s.client.Produce(ctx, &kafka.ProduceRequest{
		Topic: topic, Partition: partition, RequiredAcks: kafka.RequireAll, Compression: s.compression,
		Records: kafka.NewRecordReader(records...),
	})
	if err == nil {
		kafkaclient.Throttled("produce", resp.Throttle) // a quota: the broker holds the next request back
	}
	if err == nil && resp.Error != nil {
		err = resp.Error
		for _, rerr := range resp.RecordErrors {
			err = fmt.Errorf("%w: %v", err, rerr)
			break
		}
	}
	s.stats.addWrite(s.stage, len(idx), bytes, time.Since(start), err)
	if err == nil {
		return nil
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		switch kerr {
		case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
			return fmt.Errorf("produce to %s/%d: %w: %w", topic, partition, kerr, stage.ErrTooLarge)
		case kafka.InvalidTimestamp, kafka.InvalidRecord, kafka.PolicyViolation:
			// The broker refuses the record itself (a timestamp outside the topic's window, a record a
			// compacted topic cannot take): retrying cannot help.
			return fmt.Errorf("produce to %s/%d: %w: %w", topic, partition, kerr, stage.ErrRefused)
		case kafka.UnknownTopicOrPartition, kafka.NotLeaderForPartition, kafka.LeaderNotAvailable:
			s.forget(topic)
		}
	}
	return kafkaclient.Explain(fmt.Errorf("produce to %s/%d: %w", topic, partition, err))
}

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

// partitions is topic's partition count, cached for the metadata TTL.
func (s *Sink) partitions(ctx context.Context, topic string) (int, error) {
	s.mu.Lock()
	c, ok := s.counts[topic]
	s.mu.Unlock()
	if ok && time.Since(c.at) < s.ttl {
		return c.n, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	md, err := s.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, kafkaclient.Explain(fmt.Errorf("metadata of %s: %w", topic, err))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		if len(t.Partitions) == 0 {
			return 0, fmt.Errorf("metadata of %s: no partitions", topic)
		}
		s.mu.Lock()
		s.counts[topic] = partitionCount{n: len(t.Partitions), at: time.Now()}
		s.mu.Unlock()
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("metadata of %s: %w", topic, kafka.UnknownTopicOrPartition)
}

func (s *Sink) forget(topic string) {
	s.mu.Lock()
	delete(s.counts, topic)
	s.mu.Unlock()
}

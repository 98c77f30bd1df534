package kafkaclient

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/cimstream/cimstream/internal/retry"
)

// Reader reads one partition read_committed (see committed.go for why kafka-go's Reader cannot): it
// returns only records of committed transactions and of producers without transactions, stops at the
// last stable offset (the broker's doing), and never returns a commit or abort marker.
//
// It holds at most one fetch response's records, and sends the next fetch only when they are all
// returned: as with the kafka-go Reader it replaces (a queue of one), what a partition has read ahead
// stays about one fetch (kafka.consumer.maxBytes), and the rest is counted in the memory budget. A fetch
// outlives the FetchMessage call that started it, so a caller waiting briefly (a batch's linger) neither
// loses it nor breaks the connection; the next call picks it up.
//
// The fetch goes through the factory's fetcher (fetcher.go): the partitions of all readers that need data
// are sent in one fetch request per leader broker, and each reader gets its partition's part, its errors
// included; a reader closed while its partition is in a request in flight leaves the others unhurt.
//
// FetchMessage and Offset are for one goroutine; Stats and Close may be called from any.
type Reader struct {
	client    *kafka.Client
	fetcher   *fetcher // shared by the factory's readers: one fetch request per broker
	topic     string
	partition int
	minBytes  int
	maxBytes  int
	maxWait   time.Duration
	timeout   time.Duration
	isolation kafka.IsolationLevel

	ctx    context.Context // the reader's life: Close ends it and the fetch in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	next     int64           // offset of the next fetch (negative: kafka.FirstOffset or LastOffset, not yet resolved)
	queue    []kafka.Message // fetched, not yet returned
	inflight chan fetched    // the fetch in flight, nil when none
	failures int             // consecutive failed fetches
	backoff  retry.Backoff   // the wait before a fetch after a failed one

	mu    sync.Mutex
	stats kafka.ReaderStats
}

type fetched struct {
	committedFetch
	err error
}

// Reader backoff and error reporting, as the kafka-go Reader was configured: a failed fetch is retried
// after 50 ms doubling up to 1 s (with retry's jitter), and reported to the caller from the third failure in a row on.
const (
	readBackoffMin = 50 * time.Millisecond
	readBackoffMax = time.Second
	readAttempts   = 3
)

// PartitionReader reads one partition read_committed from offset (or kafka.FirstOffset, LastOffset),
// without a group: consumer groups assign partitions and commit; reading is done per partition so that
// offsets are committed only when work is acknowledged. It uses the factory's shared client, so its
// connections come from one pool.
func (f *Factory) PartitionReader(topic string, partition int, offset int64) (*Reader, error) {
	if offset < 0 && offset != kafka.FirstOffset && offset != kafka.LastOffset {
		return nil, fmt.Errorf("set offset %d on %s/%d: not an offset", offset, topic, partition)
	}
	c := f.cfg.Consumer
	ctx, cancel := context.WithCancel(context.Background())
	return &Reader{
		client: f.Client(), fetcher: f.fetcher(), topic: topic, partition: partition,
		minBytes: c.MinBytes, maxBytes: c.MaxBytes, maxWait: c.MaxWait, timeout: f.cfg.RequestTimeout,
		ctx: ctx, cancel: cancel, next: offset, isolation: kafka.ReadCommitted,
		backoff: retry.Backoff{Min: readBackoffMin, Max: readBackoffMax},
	}, nil
}

// UncommittedReader is PartitionReader read_uncommitted: up to the high watermark, with the records of
// open and aborted transactions (never a marker). Only for looking at what an open transaction holds
// back, never for processing.
func (f *Factory) UncommittedReader(topic string, partition int, offset int64) (*Reader, error) {
	r, err := f.PartitionReader(topic, partition, offset)
	if err == nil {
		r.isolation = kafka.ReadUncommitted
	}
	return r, err
}

// FetchMessage returns the next committed record, waiting until ctx ends.
func (r *Reader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	return r.FetchBefore(ctx, math.MaxInt64)
}

// FetchBefore is FetchMessage for a read up to end: it returns io.EOF once Offset reaches end, which
// happens without a record when the offsets left are markers or aborted records.
func (r *Reader) FetchBefore(ctx context.Context, end int64) (kafka.Message, error) {
	for {
		if r.Offset() >= end {
			return kafka.Message{}, io.EOF
		}
		if len(r.queue) > 0 {
			m := r.queue[0]
			r.queue[0] = kafka.Message{} // not kept alive by the slice
			r.queue = r.queue[1:]
			return m, nil
		}
		if r.ctx.Err() != nil {
			return kafka.Message{}, fmt.Errorf("read %s/%d: %w", r.topic, r.partition, net.ErrClosed)
		}
		if r.inflight == nil {
			r.inflight = r.start(r.next, r.retryDelay())
		}
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case res := <-r.inflight:
			r.inflight = nil
			if res.err != nil {
				r.failures++
				r.count(func(s *kafka.ReaderStats) { s.Errors++ })
				if r.failures >= readAttempts {
					return kafka.Message{}, fmt.Errorf("read %s/%d at offset %d: %w", r.topic, r.partition, r.next, res.err)
				}
				continue
			}
			r.failures = 0
			r.next, r.queue = res.Next, res.Records
		}
	}
}

// Offset is where the reader stands: every offset below it was returned by FetchMessage or is no record
// to anyone (a commit or abort marker, a record of an aborted transaction, a compacted one). A group may
// commit it once everything returned is done. Negative until the first fetch resolved a start at
// kafka.FirstOffset or LastOffset.
func (r *Reader) Offset() int64 {
	if len(r.queue) > 0 {
		return r.queue[0].Offset
	}
	return r.next
}

// Stats returns the counts since the previous call (as kafka-go's Reader.Stats does).
func (r *Reader) Stats() kafka.ReaderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	r.stats = kafka.ReaderStats{}
	s.Topic, s.Partition = r.topic, fmt.Sprint(r.partition)
	s.MinBytes, s.MaxBytes, s.MaxWait = int64(r.minBytes), int64(r.maxBytes), r.maxWait
	s.QueueLength = int64(len(r.queue))
	return s
}

// Close ends the fetch in flight and waits for it.
func (r *Reader) Close() error {
	r.once.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
	return nil
}

func (r *Reader) count(fn func(*kafka.ReaderStats)) {
	r.mu.Lock()
	fn(&r.stats)
	r.mu.Unlock()
}

// retryDelay is the wait before the next fetch: none after a success, the backoff's next after a failure.
func (r *Reader) retryDelay() time.Duration {
	if r.failures == 0 {
		r.backoff.Reset()
		return 0
	}
	return r.backoff.Next()
}

// start sends one fetch from offset in the background, after delay.
func (r *Reader) start(offset int64, delay time.Duration) chan fetched {
	ch := make(chan fetched, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if delay > 0 && !retry.Sleep(r.ctx, delay) {
			ch <- fetched{err: r.ctx.Err()}
			return
		}
		ch <- r.fetch(offset)
	}()
	return ch
}

func (r *Reader) fetch(offset int64) fetched {
	if offset < 0 {
		ctx, cancel := context.WithTimeout(r.ctx, r.maxWait+r.timeout)
		defer cancel()
		first, last, err := CommittedBounds(ctx, r.client, r.topic, r.partition)
		if err != nil {
			return fetched{err: err}
		}
		// Resolved with no records: the caller's next fetch starts there.
		if offset == kafka.LastOffset {
			first = last
		}
		return fetched{committedFetch: committedFetch{Next: first}}
	}
	r.count(func(s *kafka.ReaderStats) { s.Fetches++ })
	// The partition's part of a request shared with the other partitions of its leader; waiting on the
	// reader's life only: the fetcher bounds each request by maxWait + timeout.
	res := r.fetcher.fetch(r.ctx, topicPartition{r.topic, r.partition}, offset, r.isolation)
	if res.err != nil {
		if res.timeout {
			r.count(func(s *kafka.ReaderStats) { s.Timeouts++ })
		}
		return fetched{err: res.err}
	}
	p := res.p
	switch {
	case p.ErrorCode == int16(kafka.OffsetOutOfRange):
		ctx, cancel := context.WithTimeout(r.ctx, r.maxWait+r.timeout)
		defer cancel()
		return r.outOfRange(ctx, offset)
	case p.ErrorCode != 0:
		return fetched{err: kafka.Error(p.ErrorCode)}
	}
	var batches []protocol.RecordReader
	switch rs := p.RecordSet.Records.(type) {
	case nil:
	case *protocol.RecordStream: // what a decoded response holds: its batches, control ones included
		batches = rs.Records
	default:
		batches = []protocol.RecordReader{rs}
	}
	out, err := filterCommitted(r.topic, r.partition, p.HighWatermark, batches, p.AbortedTransactions, offset)
	if err != nil {
		return fetched{err: err}
	}
	if out.Next == offset && len(batches) > 0 {
		// Batches came but none reached past offset: the rest of the last one was compacted away, and
		// kafka-go does not say where a batch ends. Step over one offset; the next fetch finds the
		// following batch (and jumps to its base offset) or steps again.
		out.Next = offset + 1
	}
	r.count(func(s *kafka.ReaderStats) {
		s.Messages += int64(len(out.Records))
		s.Bytes += out.Bytes
		s.Offset, s.Lag = out.Next, max(0, p.HighWatermark-out.Next)
	})
	return fetched{committedFetch: out}
}

// outOfRange handles a fetch below the log start (retention deleted it: go on from the first offset, as
// the kafka-go Reader did) or past the end (an error, retried after the backoff).
func (r *Reader) outOfRange(ctx context.Context, offset int64) fetched {
	first, _, err := CommittedBounds(ctx, r.client, r.topic, r.partition)
	if err != nil {
		return fetched{err: err}
	}
	if offset < first {
		return fetched{committedFetch: committedFetch{Next: first}}
	}
	return fetched{err: fmt.Errorf("offset %d: %w", offset, kafka.OffsetOutOfRange)}
}

// CommittedBounds returns a partition's first offset and its end as a read_committed reader sees it:
// the last stable offset (the first offset of the oldest open transaction, else the high watermark).
// A reader never returns a record at or past it, so a read "up to the end" stops there.
func CommittedBounds(ctx context.Context, client *kafka.Client, topic string, partition int) (first, end int64, err error) {
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{IsolationLevel: kafka.ReadCommitted, Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, p.Error)
			}
			return p.FirstOffset, p.LastOffset, nil
		}
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: no answer for the partition", topic, partition)
}

// LastStableOffsets returns the last stable offset of each partition of topics (by topic, partition),
// in one read_committed ListOffsets request; a partition the broker answered with an error fails it.
func LastStableOffsets(ctx context.Context, client *kafka.Client, topics map[string][]int) (map[string]map[int]int64, error) {
	req := make(map[string][]kafka.OffsetRequest, len(topics))
	for topic, parts := range topics {
		for _, p := range parts {
			req[topic] = append(req[topic], kafka.LastOffsetOf(p))
		}
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{IsolationLevel: kafka.ReadCommitted, Topics: req})
	if err != nil {
		return nil, fmt.Errorf("list last stable offsets: %w", err)
	}
	out := make(map[string]map[int]int64, len(resp.Topics))
	for topic, ps := range resp.Topics {
		out[topic] = make(map[int]int64, len(ps))
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("last stable offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			out[topic][p.Partition] = p.LastOffset
		}
	}
	return out, nil
}

// Package fakekafka is an in-memory Kafka for unit tests: topics of partitions, the stage runtime's
// Broker (one member per group, generations, committed offsets with metadata, read_committed readers
// with a position) and Sink, the dead-letter tools' reads, transactions, and the faults tests inject.
// It promises only what Kafka does: conformance_test.go runs the same cases against it and against a
// real broker through kafkaedge.
package fakekafka

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// Broker is the fake. Set its hooks before use, or while nothing runs on it.
type Broker struct {
	// Fail, when set, is asked about each record a Write is about to append (call numbers the Write
	// calls from 1), outside the broker's lock: it may block or act on the broker. An error fails the
	// record and, unless it is final (stage.Final), the later records of its partition in the call, as
	// the Kafka sink does.
	Fail func(call int, o stream.Output) error
	// FailCommit, when set, may fail a generation's commit of group.
	FailCommit func(group string) error

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change a Fetch or Next may wait for
	topics  map[string]*topic
	groups  map[string]*group
	calls   int
	robin   int
}

type topic struct {
	parts    [][]entry
	maxBytes int           // max.message.bytes
	maxAge   time.Duration // message.timestamp.before.max.ms (0: any)
}

type entry struct {
	rec    stream.Record
	txn    *txn // nil: written outside a transaction
	marker bool // a transaction's commit or abort marker: an offset, no record
}

type txn struct{ open, committed bool }

// New returns a broker without topics.
func New() *Broker {
	return &Broker{changed: make(chan struct{}), topics: map[string]*topic{}, groups: map[string]*group{}}
}

// kafkaMaxMessageBytes is the broker's default message.max.bytes.
const kafkaMaxMessageBytes = 1048588

// CreateTopic creates (or replaces) a topic. Of the topic configs it knows max.message.bytes and
// message.timestamp.before.max.ms; any other panics, so no test relies on a config the fake ignores.
func (b *Broker) CreateTopic(name string, partitions int, configs ...kafka.ConfigEntry) {
	t := &topic{parts: make([][]entry, partitions), maxBytes: kafkaMaxMessageBytes}
	for _, c := range configs {
		n, err := strconv.ParseInt(c.ConfigValue, 10, 64)
		switch {
		case err != nil:
			panic(fmt.Sprintf("fakekafka: %s=%q: %v", c.ConfigName, c.ConfigValue, err))
		case c.ConfigName == "max.message.bytes":
			t.maxBytes = int(n)
		case c.ConfigName == "message.timestamp.before.max.ms":
			t.maxAge = time.Duration(n) * time.Millisecond
		default:
			panic("fakekafka: topic config " + c.ConfigName + " is not modelled")
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.topics[name] = t
	b.wakeLocked()
}

// DeleteTopic deletes a topic and its records.
func (b *Broker) DeleteTopic(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.topics, name)
}

func (b *Broker) wakeLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// partitionLocked returns the log of topic/partition, or the error Kafka gives for it.
func (b *Broker) partitionLocked(topic string, partition int) ([]entry, error) {
	t := b.topics[topic]
	if t == nil || partition < 0 || partition >= len(t.parts) {
		return nil, fmt.Errorf("%s/%d: %w", topic, partition, kafka.UnknownTopicOrPartition)
	}
	return t.parts[partition], nil
}

// stableLocked is a log's last stable offset: the first offset of a transaction still open.
func stableLocked(log []entry) int64 {
	for i, e := range log {
		if e.txn != nil && e.txn.open {
			return int64(i)
		}
	}
	return int64(len(log))
}

// visible reports whether a read_committed reader returns e (below the last stable offset).
func (e entry) visible() bool { return !e.marker && (e.txn == nil || e.txn.committed) }

// Write implements stage.Sink: records are appended as the Kafka sink writes them (Murmur2 partitions
// by HashKey, else Key; an explicit partition kept; no key: round-robin), each refused or failed alone.
func (b *Broker) Write(ctx context.Context, outs []stream.Output) []error {
	b.mu.Lock()
	b.calls++
	call := b.calls
	b.mu.Unlock()
	errs := make([]error, len(outs))
	stopped := map[string]error{} // "topic/partition": the failure that stopped it in this call
	for i, o := range outs {
		p, err := b.partitionOf(o)
		where := fmt.Sprint(o.Topic, "/", p)
		if cause := stopped[where]; err == nil && cause != nil {
			errs[i] = fmt.Errorf("not sent: an earlier record of the partition failed: %w", cause)
			continue
		}
		if err == nil {
			err = ctx.Err()
		}
		if err == nil && b.Fail != nil {
			err = b.Fail(call, o)
		}
		if err == nil {
			err = b.append(o, p)
		}
		if errs[i] = err; err != nil && !stage.Final(err) {
			stopped[where] = err
		}
	}
	return errs
}

func (b *Broker) partitionOf(o stream.Output) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[o.Topic]
	if t == nil {
		return -1, fmt.Errorf("metadata of %s: %w", o.Topic, kafka.UnknownTopicOrPartition)
	}
	key := o.HashKey
	if key == nil {
		key = o.Key
	}
	switch n := len(t.parts); {
	case o.Partition >= 0:
		return o.Partition % n, nil
	case key == nil:
		b.robin++
		return b.robin % n, nil
	default:
		return kafkaedge.HomePartition(key, n), nil
	}
}

// batchOverhead is what a record batch adds to its records, as the broker measures max.message.bytes.
const batchOverhead = 61

func (b *Broker) append(o stream.Output, p int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[o.Topic]
	switch {
	case t == nil || p >= len(t.parts): // deleted since partitionOf
		return fmt.Errorf("produce to %s/%d: %w", o.Topic, p, kafka.UnknownTopicOrPartition)
	case kafkaedge.RecordSize(o)+batchOverhead > t.maxBytes:
		return fmt.Errorf("produce to %s/%d: %w: %w", o.Topic, p, kafka.MessageSizeTooLarge, stage.ErrTooLarge)
	case t.maxAge > 0 && time.Since(o.Time) > t.maxAge:
		return fmt.Errorf("produce to %s/%d: %w: %w", o.Topic, p, kafka.InvalidTimestamp, stage.ErrRefused)
	}
	b.appendLocked(o.Topic, p, entry{rec: stream.Record{Key: o.Key, Value: o.Value, Headers: slices.Clone(o.Headers), Time: o.Time}})
	return nil
}

// appendLocked gives e its coordinates (Kafka keeps timestamps in milliseconds) and returns its offset.
func (b *Broker) appendLocked(topic string, p int, e entry) int64 {
	t := b.topics[topic]
	off := int64(len(t.parts[p]))
	e.rec.Topic, e.rec.Partition, e.rec.Offset = topic, p, off
	if !e.rec.Time.IsZero() {
		e.rec.Time = time.UnixMilli(e.rec.Time.UnixMilli())
	}
	t.parts[p] = append(t.parts[p], e)
	b.wakeLocked()
	return off
}

// Records returns every record of topic, partition by partition, transactions or not.
func (b *Broker) Records(topic string) []stream.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []stream.Record
	if t := b.topics[topic]; t != nil {
		for _, log := range t.parts {
			for _, e := range log {
				if !e.marker {
					out = append(out, e.rec)
				}
			}
		}
	}
	return out
}

// Ranges lists topic's partitions with their first offset and last stable offset (the dead-letter
// tools' kafkaedge.Ranges).
func (b *Broker) Ranges(_ context.Context, topic string) ([]kafkaedge.PartitionRange, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.topics[topic]
	if t == nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, kafkaedge.ErrNoTopic)
	}
	out := make([]kafkaedge.PartitionRange, len(t.parts))
	for p, log := range t.parts {
		out[p] = kafkaedge.PartitionRange{Partition: p, End: stableLocked(log)}
	}
	return out, nil
}

// Read calls fn for each committed record of a partition in [from, end), stopping at the last stable
// offset (kafkaedge.ReadRange).
func (b *Broker) Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	return b.read(ctx, topic, partition, from, end, true, fn)
}

// ReadWritten calls fn for each record of a partition from offset from, transactions open, aborted or
// committed (kafkaedge.ReadWritten).
func (b *Broker) ReadWritten(ctx context.Context, topic string, partition int, from int64, fn func(stream.Record) error) error {
	return b.read(ctx, topic, partition, from, 1<<62, false, fn)
}

func (b *Broker) read(ctx context.Context, topic string, partition int, from, end int64, committed bool, fn func(stream.Record) error) error {
	b.mu.Lock()
	log, err := b.partitionLocked(topic, partition)
	if committed {
		end = min(end, stableLocked(log))
	}
	var recs []stream.Record
	for _, e := range log[min(max(from, 0), int64(len(log))):min(max(end, 0), int64(len(log)))] {
		if e.visible() || !committed && !e.marker {
			recs = append(recs, e.rec)
		}
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Reader implements stage.Broker: a read_committed reader of one partition from offset, or from
// kafka.FirstOffset or LastOffset (resolved by the first Fetch, as kafkaclient.Reader does).
func (b *Broker) Reader(_, topic string, partition int, offset int64) (stage.Reader, error) {
	return &reader{b: b, topic: topic, partition: partition, next: offset}, nil
}

type reader struct {
	b         *Broker
	topic     string
	partition int
	next      int64
}

func (r *reader) Fetch(ctx context.Context) (stream.Record, error) {
	for {
		r.b.mu.Lock()
		log, err := r.b.partitionLocked(r.topic, r.partition)
		switch r.next {
		case kafka.FirstOffset:
			r.next = 0
		case kafka.LastOffset:
			r.next = stableLocked(log)
		}
		r.skipLocked(log)
		var rec stream.Record
		found := err == nil && r.next < stableLocked(log)
		if found {
			rec = log[r.next].rec
			r.next++
		}
		wait := r.b.changed
		r.b.mu.Unlock()
		if err != nil || found {
			return rec, err
		}
		select {
		case <-ctx.Done():
			return stream.Record{}, ctx.Err()
		case <-wait:
		}
	}
}

// skipLocked moves past the offsets below the last stable offset that are no records.
func (r *reader) skipLocked(log []entry) {
	for r.next >= 0 && r.next < stableLocked(log) && !log[r.next].visible() {
		r.next++
	}
}

// Position implements stage.Positioner: negative until a Fetch resolved a start at FirstOffset or
// LastOffset.
func (r *reader) Position() int64 {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if log, err := r.b.partitionLocked(r.topic, r.partition); err == nil {
		r.skipLocked(log)
	}
	return r.next
}

func (r *reader) Close() error { return nil }

// TxnProducer writes in transactions, as a connector does with the Java client (kafkatest.TxnProducer):
// the records of a transaction still open, and everything after them, are held from read_committed
// readers; an aborted one's are never returned to them. Commit and Abort leave a marker on every
// partition the transaction wrote to.
type TxnProducer struct {
	b     *Broker
	cur   *txn
	parts map[string]map[int]bool
}

// TxnProducer returns a transactional producer on b.
func (b *Broker) TxnProducer() *TxnProducer { return &TxnProducer{b: b} }

// Begin starts a transaction.
func (p *TxnProducer) Begin() { p.cur, p.parts = &txn{open: true}, map[string]map[int]bool{} }

// Send writes a record in the transaction and returns its offset.
func (p *TxnProducer) Send(topic string, partition int, key, value string) int64 {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if _, err := p.b.partitionLocked(topic, partition); err != nil {
		panic(err)
	}
	if p.parts[topic] == nil {
		p.parts[topic] = map[int]bool{}
	}
	p.parts[topic][partition] = true
	return p.b.appendLocked(topic, partition, entry{rec: stream.Record{Key: []byte(key), Value: []byte(value), Time: time.Now()}, txn: p.cur})
}

// Commit commits the transaction.
func (p *TxnProducer) Commit() { p.end(true) }

// Abort aborts the transaction.
func (p *TxnProducer) Abort() { p.end(false) }

func (p *TxnProducer) end(commit bool) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.cur.open, p.cur.committed = false, commit
	for topic, parts := range p.parts {
		for partition := range parts {
			if t := p.b.topics[topic]; t != nil && partition < len(t.parts) {
				p.b.appendLocked(topic, partition, entry{txn: p.cur, marker: true})
			}
		}
	}
	p.b.wakeLocked()
}

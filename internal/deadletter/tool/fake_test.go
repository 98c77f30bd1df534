package tool

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/cimstream/cimstream/internal/stream"
)

// memBroker is an in-memory Broker: topics of partitions of records, writes appended in order.
type memBroker struct {
	mu     sync.Mutex
	topics map[string][][]stream.Record
	// fail, when set, is asked before each record is appended; an error fails that record and every
	// later one of the same Write (as the sink reports "not attempted").
	fail func(o stream.Output) error
	// inject, when set, is told of each record written and returns records written right after it
	// (another client's writes).
	inject func(o stream.Output) []stream.Output
	// rangesFail, when set, may fail Ranges of a topic.
	rangesFail func(topic string) error
	// stable, when set for a partition ("topic/partition"), is its last stable offset: a connector's
	// transaction open there hides everything from it on from Ranges and Read (read_committed).
	stable map[string]int64
}

func newMem(topics map[string]int) *memBroker {
	b := &memBroker{topics: map[string][][]stream.Record{}}
	for t, n := range topics {
		b.topics[t] = make([][]stream.Record, n)
	}
	return b
}

func (b *memBroker) Ranges(_ context.Context, topic string) ([]Range, error) {
	if b.rangesFail != nil {
		if err := b.rangesFail(topic); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ps, ok := b.topics[topic]
	if !ok {
		return nil, fmt.Errorf("metadata of %s: %w", topic, ErrNoTopic)
	}
	out := make([]Range, len(ps))
	for i, p := range ps {
		out[i] = Range{Partition: i, End: int64(len(p))}
		if s, ok := b.stable[fmt.Sprintf("%s/%d", topic, i)]; ok {
			out[i].End = min(out[i].End, s)
		}
	}
	return out, nil
}

// ReadWritten reads to the end, past the last stable offset (read_uncommitted).
func (b *memBroker) ReadWritten(ctx context.Context, topic string, partition int, from int64, fn func(stream.Record) error) error {
	return b.read(ctx, topic, partition, from, 1<<62, fn)
}

func (b *memBroker) Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	if s, ok := b.stable[fmt.Sprintf("%s/%d", topic, partition)]; ok {
		end = min(end, s)
	}
	return b.read(ctx, topic, partition, from, end, fn)
}

func (b *memBroker) read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	b.mu.Lock()
	recs := append([]stream.Record(nil), b.topics[topic][partition]...)
	b.mu.Unlock()
	for _, r := range recs {
		if r.Offset < from || r.Offset >= end {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (b *memBroker) Write(_ context.Context, outs []stream.Output) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := make([]error, len(outs))
	var failed error
	for i, o := range outs {
		if failed == nil && b.fail != nil {
			failed = b.fail(o)
		}
		if failed != nil {
			errs[i] = failed
			continue
		}
		errs[i] = b.appendLocked(o)
		if errs[i] == nil && b.inject != nil {
			for _, extra := range b.inject(o) {
				_ = b.appendLocked(extra)
			}
		}
	}
	return errs
}

func (b *memBroker) appendLocked(o stream.Output) error {
	ps, ok := b.topics[o.Topic]
	if !ok {
		return errors.New("unknown topic " + o.Topic)
	}
	p := o.Partition
	if p < 0 {
		h := fnv.New32a()
		h.Write(o.Key)
		p = int(h.Sum32() % uint32(len(ps)))
	}
	b.topics[o.Topic][p] = append(ps[p], stream.Record{Topic: o.Topic, Partition: p, Offset: int64(len(ps[p])),
		Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time})
	return nil
}

// all returns every record of a topic, partition by partition.
func (b *memBroker) all(topic string) []stream.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []stream.Record
	for _, p := range b.topics[topic] {
		out = append(out, p...)
	}
	return out
}

// add appends records as produced to a topic, returning them with their coordinates.
func (b *memBroker) add(outs ...stream.Output) {
	for _, err := range b.Write(context.Background(), outs) {
		if err != nil {
			panic(err)
		}
	}
}

// hookBroker lets a test act in the middle of a Write and have the target refuse records for good.
type hookBroker struct {
	*memBroker
	before func(i int, o stream.Output) // called before record i of a Write is appended
	refuse func(o stream.Output) error  // a final per-record error: the sink goes on with later records
	// read counts the records Read passed on, by topic.
	read map[string]int
}

func (h *hookBroker) Write(ctx context.Context, outs []stream.Output) []error {
	errs := make([]error, len(outs))
	for i, o := range outs {
		if h.before != nil {
			h.before(i, o)
		}
		if h.refuse != nil {
			if err := h.refuse(o); err != nil {
				errs[i] = err
				continue
			}
		}
		errs[i] = h.memBroker.Write(ctx, []stream.Output{o})[0]
	}
	return errs
}

func (h *hookBroker) Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	return h.memBroker.Read(ctx, topic, partition, from, end, func(r stream.Record) error {
		if h.read == nil {
			h.read = map[string]int{}
		}
		h.read[topic]++
		return fn(r)
	})
}

// replaysOf counts a target topic's records by the dead letter they replay (cimstream.replay.of).
func replaysOf(b *memBroker, topic string) map[string]int {
	seen := map[string]int{}
	for _, r := range b.all(topic) {
		of, _ := header(r.Headers, HeaderReplayOf)
		seen[of]++
	}
	return seen
}

package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stream"
)

// PartitionRange is the offsets a partition holds now: First is the oldest kept, End the last stable
// offset, where a read_committed reader stops (the next to be written, unless a transaction is open;
// First == End: nothing to read).
type PartitionRange struct {
	Partition int
	First     int64
	End       int64
}

// ErrNoTopic is returned (wrapped) by Ranges for a topic the cluster does not have.
var ErrNoTopic = errors.New("no such topic")

// Ranges returns every partition of topic with its first and end offsets, sorted by partition.
func Ranges(ctx context.Context, factory *kafkaclient.Factory, topic string) ([]PartitionRange, error) {
	client := factory.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, kafkaclient.Explain(fmt.Errorf("metadata of %s: %w", topic, err))
	}
	var req []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("metadata of %s: %w: %w", topic, ErrNoTopic, t.Error)
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			req = append(req, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(req) == 0 {
		return nil, fmt.Errorf("metadata of %s: %w", topic, ErrNoTopic)
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{IsolationLevel: kafka.ReadCommitted, Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, kafkaclient.Explain(fmt.Errorf("list offsets of %s: %w", topic, err))
	}
	out := make([]PartitionRange, 0, len(req)/2)
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out = append(out, PartitionRange{Partition: p.Partition, First: p.FirstOffset, End: p.LastOffset})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}

// readIdle bounds the wait for the next record of a read: below its end, a record is always there.
const readIdle = 15 * time.Second

// ReadRange reads the committed records of one partition from offset from up to (not including) end, in
// order; from must not be below the partition's first offset. An end past the partition's last stable
// offset is read up to that offset only: what an open transaction wrote is not readable yet, and a read
// waiting for it would wait as long as the transaction stays open. fn returning an error stops the read
// with it.
func ReadRange(ctx context.Context, factory *kafkaclient.Factory, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	if from >= end {
		return nil
	}
	if _, stable, err := Bounds(ctx, factory, topic, partition); err != nil {
		return kafkaclient.Explain(err)
	} else if stable < end {
		end = stable
	}
	return readTo(ctx, factory.PartitionReader, topic, partition, from, end, fn)
}

// readTo is the one partition read loop: the records below end of the reader open makes at from, each
// waited for at most readIdle.
func readTo(ctx context.Context, open func(topic string, partition int, from int64) (*kafkaclient.Reader, error), topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	if from >= end {
		return nil
	}
	reader, err := open(topic, partition, from)
	if err != nil {
		return err
	}
	defer reader.Close()
	for {
		fctx, cancel := context.WithTimeout(ctx, readIdle)
		m, err := reader.FetchBefore(fctx, end)
		cancel()
		switch {
		case errors.Is(err, io.EOF): // end reached (its last offsets may be markers, not records)
			return nil
		case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("read %s/%d: no record from offset %d to %d within %v", topic, partition, reader.Offset(), end, readIdle)
		case err != nil:
			return kafkaclient.Explain(fmt.Errorf("read %s/%d: %w", topic, partition, err))
		}
		if err := fn(toRecord(m)); err != nil {
			return err
		}
	}
}

// ReadWritten reads every record of a partition from offset from up to its high watermark,
// read_uncommitted: what a non-transactional producer wrote is there at once, even while another
// producer's transaction on the partition holds the last stable offset back. For checking what was
// written (an interrupted dead-letter replay), never for processing.
func ReadWritten(ctx context.Context, factory *kafkaclient.Factory, topic string, partition int, from int64, fn func(stream.Record) error) error {
	resp, err := factory.Client().ListOffsets(ctx, &kafka.ListOffsetsRequest{IsolationLevel: kafka.ReadUncommitted,
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(partition)}}})
	if err != nil {
		return kafkaclient.Explain(fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err))
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("list offsets of %s/%d: %w", topic, partition, p.Error)
		}
		if p.Partition == partition {
			return ReadHeld(ctx, factory, topic, partition, from, p.LastOffset, fn)
		}
	}
	return fmt.Errorf("list offsets of %s/%d: no answer for the partition", topic, partition)
}

// ReadHeld reads what a partition holds above its last stable offset: the records from offset from up to
// (not including) end, read_uncommitted, so those of a transaction still open (and of aborted ones)
// are included. It is for telling where held records will go, never for processing them.
func ReadHeld(ctx context.Context, factory *kafkaclient.Factory, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	return readTo(ctx, factory.UncommittedReader, topic, partition, from, end, fn)
}

package kafkaedge

import (
	"context"
	"errors"
	"fmt"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stream"
)

// ErrGap is returned (wrapped) by ReadFrom when from is outside the partition's offsets: records after
// it were deleted (or the topic was recreated), so state built up to from cannot be caught up.
var ErrGap = errors.New("offset outside the partition")

// ReadFrom reads a state changelog partition from offset from (-1: its first offset) up to the end it
// has when called (its last stable offset: see Bounds), with ReadRange's reader, and returns the records
// read and that end. A from outside [first offset, end] is ErrGap.
func ReadFrom(ctx context.Context, factory *kafkaclient.Factory, topic string, partition int, from int64, fn func(key, value []byte) error) (int, int64, error) {
	first, end, err := Bounds(ctx, factory, topic, partition)
	if err != nil {
		return 0, 0, err
	}
	switch {
	case from < 0:
		from = first
	case from < first || from > end:
		return 0, end, fmt.Errorf("%s/%d: %w: %d not in [%d, %d]", topic, partition, ErrGap, from, first, end)
	}
	n := 0
	err = readTo(ctx, factory.PartitionReader, topic, partition, from, end, func(r stream.Record) error {
		if err := fn(r.Key, r.Value); err != nil {
			return fmt.Errorf("restore %s/%d offset %d: %w", topic, partition, r.Offset, err)
		}
		n++
		return nil
	})
	return n, end, err
}

// Bounds returns a partition's first offset and its end as a read_committed reader sees it: the last
// stable offset, which is the offset the next record will get unless a transaction is open.
func Bounds(ctx context.Context, factory *kafkaclient.Factory, topic string, partition int) (first, end int64, err error) {
	return kafkaclient.CommittedBounds(ctx, factory.Client(), topic, partition)
}

// Package stage runs a pipeline stage: it joins a consumer group, gives each assigned partition its own
// handler, writes what the handler makes of every input record, and commits an input offset only when
// the input and everything before it is settled (every record it produced acknowledged, or its dead
// letter acknowledged).
//
// An outcome travels with each input record (benthos' ack function is the model): handlers return one
// stream.Result per input, never offsets. The broker is reached only through the small interfaces below,
// which internal/kafkaedge implements with kafka-go; everything here is tested with fakes.
package stage

import (
	"context"
	"errors"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// Handler processes the records of one partition, in order.
type Handler interface {
	// Process returns one Result per input record, in the order of batch.
	Process(batch []stream.Record) []stream.Result
}

// Ticker is a Handler with housekeeping: Tick is called about once per commit interval with the wall
// clock, and its outputs (tombstones of expired state) are written like any other.
type Ticker interface {
	Tick(now time.Time) []stream.Output
}

// Settler is a Handler whose outcomes are reported in a second step: once the outputs of a batch were
// acknowledged or given up on (after Config.GiveUpAfter), Settle gets one Outcome per input of the batch
// and returns one Result per input (delivery notifications, dead letters); those are never given up on.
type Settler interface {
	Settle(outcomes []Outcome) []stream.Result
}

// Closer is a Handler that wants to know when its partition is given up (revoked or stopping).
type Closer interface {
	Close()
}

// Abandoner is a Handler that wants to know, before Close, that outputs it made were never written: the
// partition was lost between Process and the acknowledgement of its outputs. Its in-memory state is then
// ahead of what was written, and must not outlive the partition.
type Abandoner interface {
	Abandoned()
}

// Step processes one batch of a partition (possibly empty: a Tick may follow), writes what it made and
// settles it; it reports false when the partition was lost meanwhile. ctx ends when the partition is
// given up.
type Step func(ctx context.Context, batch []stream.Record) bool

// Middleware wraps the Step of handler h: behaviour around a batch that belongs to one client of the
// runtime (the inbound fast path serializes its handlers' writes with it), watermill's HandlerMiddleware.
// A middleware that waits before calling next holds the batch's bytes of the memory budget meanwhile.
type Middleware func(h Handler, next Step) Step

// Outcome is what became of one input's outputs.
type Outcome struct {
	Record stream.Record
	// Rejected: Process dead-lettered the input (its dead letter is acknowledged).
	Rejected bool
	// Err says why some outputs were not written: given up on after the give-up time, or refused for
	// good (errors.Is(Err, ErrTooLarge)). Nil when every output was acknowledged.
	Err error
}

// ErrTooLarge marks a record the broker or the client refuses for its size: retrying cannot help.
var ErrTooLarge = errors.New("record too large")

// ErrRefused marks a record the broker refuses for good for another reason (an invalid timestamp for the
// topic's window, an invalid record, a policy violation): retrying cannot help either.
var ErrRefused = errors.New("record refused by the broker")

// Final reports whether err is final for its record (too large or refused): it is never retried.
func Final(err error) bool { return errors.Is(err, ErrTooLarge) || errors.Is(err, ErrRefused) }

// Assignment is one partition given to this member, with the offset to read from.
type Assignment struct {
	Topic     string
	Partition int
	Offset    int64
}

// Group is a consumer-group membership.
type Group interface {
	// Next waits for the next generation (the first one, or the one after a rebalance).
	Next(ctx context.Context) (Generation, error)
	Close() error
}

// Generation is one period of stable membership.
type Generation interface {
	ID() int32
	Assignments() []Assignment
	// Start runs fn; fn's ctx ends when the generation ends (a rebalance or Close), and the generation
	// is over for this member only when fn returned.
	Start(fn func(ctx context.Context))
	// Commit commits offsets (the next offset to read) by topic and partition.
	Commit(offsets map[string]map[int]int64) error
}

// OffsetMeta is a committed offset with the metadata the group stores beside it.
type OffsetMeta struct {
	Offset   int64
	Metadata string
}

// MetadataCommitter is a Generation that commits metadata with each offset: the webhook egress stores
// there the offsets it settled above the committed one, so a restart does not deliver them again.
type MetadataCommitter interface {
	CommitMetadata(offsets map[string]map[int]OffsetMeta) error
}

// MetadataFetcher reads a group's committed offset of a partition with its metadata (Offset -1: none).
type MetadataFetcher interface {
	Committed(ctx context.Context, group, topic string, partition int) (OffsetMeta, error)
}

// Reader reads one partition.
type Reader interface {
	// Fetch returns the next record, waiting until ctx ends.
	Fetch(ctx context.Context) (stream.Record, error)
	Close() error
}

// Positioner is a Reader that says where it stands: every offset below Position was returned by Fetch
// or is no record (a transaction's commit or abort marker, a record of an aborted transaction). Once
// everything fetched is settled the runtime commits it, so a partition whose last offsets are markers
// is committed up to its end rather than left with a lag that never drains. Negative: not known.
type Positioner interface {
	Position() int64
}

// Sink writes records with acks=all.
type Sink interface {
	// Write returns one error per output, nil for each acknowledged one. Errors wrapping ErrTooLarge or
	// ErrRefused are final (Final); any other error may succeed on a retry. Within a partition, a record is never acknowledged
	// after a later one of the same call failed or was not attempted.
	Write(ctx context.Context, outputs []stream.Output) []error
}

// Broker is what a stage needs of Kafka.
type Broker interface {
	Group(groupID string, topics []string) (Group, error)
	Reader(stage, topic string, partition int, offset int64) (Reader, error)
}

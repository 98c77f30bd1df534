package tool

import (
	"context"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stream"
)

// Range is a partition's first and end offsets.
type Range = kafkaedge.PartitionRange

// ErrNoTopic is returned (wrapped) by Broker.Ranges for a topic the cluster does not have.
var ErrNoTopic = kafkaedge.ErrNoTopic

// Broker is what the tools need of Kafka.
type Broker interface {
	// Ranges lists topic's partitions with their first and end offsets, sorted by partition; an error
	// wrapping ErrNoTopic when there is no such topic.
	Ranges(ctx context.Context, topic string) ([]Range, error)
	// Read calls fn for each record of a partition in [from, end), in order.
	Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error
	// ReadWritten calls fn for each record of a partition from offset from up to its high watermark,
	// transactions or not (read_uncommitted): what the tool wrote to a topic on which a connector keeps a
	// transaction open sits above the last stable offset.
	ReadWritten(ctx context.Context, topic string, partition int, from int64, fn func(stream.Record) error) error
	// Write produces records with acks=all and returns an error per record (nil: acknowledged).
	Write(ctx context.Context, outs []stream.Output) []error
}

// KafkaBroker implements Broker with the project's client factory (TLS, SASL and timeouts from the
// configuration) and the pipelines' sink (acks=all, Murmur2 partitioning by key).
func KafkaBroker(factory *kafkaclient.Factory) Broker {
	return kafkaBroker{factory: factory, sink: kafkaedge.NewSink(factory, "dlq-replay", nil)}
}

type kafkaBroker struct {
	factory *kafkaclient.Factory
	sink    *kafkaedge.Sink
}

func (b kafkaBroker) Ranges(ctx context.Context, topic string) ([]Range, error) {
	return kafkaedge.Ranges(ctx, b.factory, topic)
}

func (b kafkaBroker) Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	return kafkaedge.ReadRange(ctx, b.factory, topic, partition, from, end, fn)
}

func (b kafkaBroker) ReadWritten(ctx context.Context, topic string, partition int, from int64, fn func(stream.Record) error) error {
	return kafkaedge.ReadWritten(ctx, b.factory, topic, partition, from, fn)
}

func (b kafkaBroker) Write(ctx context.Context, outs []stream.Output) []error {
	return b.sink.Write(ctx, outs)
}

package fakekafka_test

import (
	"context"
	"os"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// TestIntegrationConformanceOfKafka runs the cases against Apache Kafka through kafkaedge.
func TestIntegrationConformanceOfKafka(t *testing.T) {
	conformance(t, func(t *testing.T) backend {
		f := kafkatest.Factory(t)
		return backend{broker: kafkaedge.NewBroker(f, nil), sink: kafkaedge.NewSink(f, "conformance", nil), logs: kafkaLogs{f},
			name: func(t *testing.T, kind string) string { return kafkatest.Name(t, kind) },
			topic: func(t *testing.T, partitions int, configs ...kafka.ConfigEntry) string {
				return kafkatest.Topic(t, "topic", partitions, configs...)
			},
			txn:       func(t *testing.T) txnProducer { return kafkatest.NewTxnProducer(t) },
			rebalance: func(t *testing.T, group, topic string) { kafkatest.StallMember(t, group, topic).Leave() },
		}
	})
}

// kafkaLogs reads as the dead-letter tools do.
type kafkaLogs struct{ f *kafkaclient.Factory }

func (l kafkaLogs) Ranges(ctx context.Context, topic string) ([]kafkaedge.PartitionRange, error) {
	return kafkaedge.Ranges(ctx, l.f, topic)
}

func (l kafkaLogs) Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
	return kafkaedge.ReadRange(ctx, l.f, topic, partition, from, end, fn)
}

func (l kafkaLogs) ReadWritten(ctx context.Context, topic string, partition int, from int64, fn func(stream.Record) error) error {
	return kafkaedge.ReadWritten(ctx, l.f, topic, partition, from, fn)
}

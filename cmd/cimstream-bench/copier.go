package main

import (
	"context"
	"errors"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// The copier baseline reads with kafka-go's own kafka.Reader and writes with its kafka.Writer, as a user
// of kafka-go would, whatever cimstream's edge does: it is the plain-client figure cimstream is compared
// with. Only the consumer group (kafka-go's ConsumerGroup) is taken from kafkaedge.

// copierBroker is kafkaedge's group with kafka-go partition readers.
type copierBroker struct {
	*kafkaedge.Broker
	cfg config.Kafka
	f   *kafkaclient.Factory
}

func (b copierBroker) Reader(_, topic string, partition int, offset int64) (stage.Reader, error) {
	c := b.cfg.Consumer
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: b.cfg.Brokers, Topic: topic, Partition: partition, Dialer: b.f.Dialer(),
		MinBytes: c.MinBytes, MaxBytes: c.MaxBytes, MaxWait: c.MaxWait, QueueCapacity: c.BatchSize,
		IsolationLevel: kafka.ReadCommitted,
	})
	if err := r.SetOffset(offset); err != nil {
		_ = r.Close()
		return nil, err
	}
	return kafkaReader{r}, nil
}

type kafkaReader struct{ r *kafka.Reader }

func (r kafkaReader) Fetch(ctx context.Context) (stream.Record, error) {
	m, err := r.r.FetchMessage(ctx)
	if err != nil {
		return stream.Record{}, err
	}
	rec := stream.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
	for _, h := range m.Headers {
		rec.Headers = append(rec.Headers, stream.Header{Key: h.Key, Value: h.Value})
	}
	return rec, nil
}

func (r kafkaReader) Close() error { return r.r.Close() }

// kafkaSink writes with one kafka-go Writer (acks=all, Murmur2, the project's batch settings).
type kafkaSink struct{ w *kafka.Writer }

func (s kafkaSink) Write(ctx context.Context, outs []stream.Output) []error {
	msgs := make([]kafka.Message, len(outs))
	for i, o := range outs {
		msgs[i] = kafka.Message{Topic: o.Topic, Key: o.Key, Value: o.Value, Time: o.Time}
		for _, h := range o.Headers {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	errs := make([]error, len(outs))
	err := s.w.WriteMessages(ctx, msgs...)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
	case errors.As(err, &werrs) && len(werrs) == len(outs):
		copy(errs, werrs)
	default:
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}

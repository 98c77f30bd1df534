package kafkaclient_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

// BenchmarkPartitionReader compares the CPU per record of the read_committed partition reader with
// kafka-go's Reader configured as cimstream configured it before (queue of one), on one partition of 1 KiB
// records, in the same run: cpu-ns/rec is the process's user+system time per record read.
//
//	go test -run '^$' -bench PartitionReader ./internal/kafkaclient/
func BenchmarkPartitionReader(b *testing.B) {
	f := kafkatest.Factory(b)
	topic := kafkatest.Topic(b, "bench", 1)
	const n = 20000
	w := f.Writer(topic)
	defer w.Close()
	value := make([]byte, 1024)
	msgs := make([]kafka.Message, 0, 1000)
	for i := 0; i < n; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint("k", i%100)), Value: value, Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}})
		if len(msgs) == cap(msgs) {
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	type fetcher interface {
		FetchMessage(context.Context) (kafka.Message, error)
		Close() error
	}
	readers := map[string]func() fetcher{
		"kafka-go-Reader": func() fetcher {
			c := kafkatest.Config(b).Kafka.Consumer
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: kafkatest.Brokers(b), Topic: topic, Partition: 0, Dialer: f.Dialer(),
				MinBytes: c.MinBytes, MaxBytes: c.MaxBytes, MaxWait: c.MaxWait, ReadBackoffMin: 50 * time.Millisecond,
				ReadBackoffMax: time.Second, MaxAttempts: 3, QueueCapacity: 1})
			if err := r.SetOffset(kafka.FirstOffset); err != nil {
				b.Fatal(err)
			}
			return r
		},
		"read_committed": func() fetcher {
			r, err := f.PartitionReader(topic, 0, kafka.FirstOffset)
			if err != nil {
				b.Fatal(err)
			}
			return r
		},
	}
	for _, name := range []string{"kafka-go-Reader", "read_committed", "kafka-go-Reader", "read_committed"} {
		b.Run(name, func(b *testing.B) {
			var read int
			cpu := cpuTime()
			for b.Loop() {
				r := readers[name]()
				for i := 0; i < n; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					if _, err := r.FetchMessage(ctx); err != nil {
						b.Fatal(err)
					}
					cancel()
				}
				_ = r.Close()
				read += n
			}
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(read), "cpu-ns/rec")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(read), "wall-ns/rec")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package kafkaclient_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// BenchmarkFetchLatency produces at a fixed rate (1,000 msg/s, 5 records every 5 ms, keyed over the
// partitions) to 6 partitions of 1 or 3 topics, reads every partition with its own reader as the stages
// do, and reports the time from just before the write to FetchMessage returning the record (p50, p99)
// and the fetch requests sent per 1,000 records read.
//
//	go test -run '^$' -bench FetchLatency -benchtime 1x ./internal/kafkaclient/
func BenchmarkFetchLatency(b *testing.B) {
	for _, topics := range []int{1, 3} {
		b.Run(fmt.Sprintf("topics-%d", topics), func(b *testing.B) {
			for b.Loop() {
				fetchLatency(b, topics, 4*time.Second)
			}
		})
	}
}

func fetchLatency(b *testing.B, topics int, duration time.Duration) {
	f := kafkatest.Factory(b)
	var names []string
	for i := range topics {
		names = append(names, kafkatest.Topic(b, fmt.Sprint("latency", i), 6))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, topic := range names {
		for p := range 6 {
			r, err := f.PartitionReader(topic, p, 0)
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.Close()
				for {
					m, err := r.FetchMessage(ctx)
					if err != nil {
						return
					}
					sent, _ := strconv.ParseInt(string(m.Value), 10, 64)
					d := time.Since(time.Unix(0, sent))
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
	}
	w := f.Writer("")
	defer w.Close()
	time.Sleep(300 * time.Millisecond) // readers in their first long poll
	before := kafkaclient.RequestTotals()["Fetch"]
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for end := time.Now().Add(duration); time.Now().Before(end); <-tick.C {
		msgs := make([]kafka.Message, 5)
		now := strconv.FormatInt(time.Now().UnixNano(), 10)
		for i := range msgs {
			msgs[i] = kafka.Message{Topic: names[sent%len(names)], Key: []byte(fmt.Sprint("k", sent)), Value: []byte(now)}
			sent++
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= sent {
			break
		}
	}
	requests := kafkaclient.RequestTotals()["Fetch"] - before
	cancel()
	wg.Wait()
	if len(lat) < sent {
		b.Fatalf("read %d of %d records", len(lat), sent)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(requests)*1000/float64(len(lat)), "fetches/1k-msgs")
	b.ReportMetric(float64(len(lat))/duration.Seconds(), "msg/s")
}

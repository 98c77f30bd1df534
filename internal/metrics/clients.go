package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// ClientCollector exports kafka-go client statistics. kafka-go's Stats() return counts since the previous
// call, so they are accumulated here into monotonic counters.
type ClientCollector struct {
	mu      sync.Mutex
	writers map[string]*kafka.Writer // by stage/writer name
	totals  map[[3]string]float64    // metric, stage, writer → total
	descs   map[string]*prometheus.Desc
}

var clientMetrics = []struct{ name, help string }{
	{"cimstream_kafka_writer_writes_total", "Produce requests sent by kafka-go writers."},
	{"cimstream_kafka_writer_messages_total", "Records sent by kafka-go writers."},
	{"cimstream_kafka_writer_bytes_total", "Bytes sent by kafka-go writers."},
	{"cimstream_kafka_writer_errors_total", "Produce errors seen by kafka-go writers."},
	{"cimstream_kafka_writer_retries_total", "Produce retries inside kafka-go writers."},
	{"cimstream_kafka_reader_fetches_total", "Fetch requests sent by kafka-go readers."},
	{"cimstream_kafka_reader_messages_total", "Records received by kafka-go readers."},
	{"cimstream_kafka_reader_bytes_total", "Bytes received by kafka-go readers."},
	{"cimstream_kafka_reader_errors_total", "Fetch errors seen by kafka-go readers."},
	{"cimstream_kafka_reader_timeouts_total", "Fetch timeouts seen by kafka-go readers."},
}

// NewClientCollector returns an empty collector.
func NewClientCollector() *ClientCollector {
	c := &ClientCollector{writers: map[string]*kafka.Writer{}, totals: map[[3]string]float64{}, descs: map[string]*prometheus.Desc{}}
	for _, m := range clientMetrics {
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, []string{"stage", "client"}, nil)
	}
	return c
}

// AddWriter makes a writer's statistics exported under stage and name.
func (c *ClientCollector) AddWriter(stage, name string, w *kafka.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writers[stage+"\x00"+name] = w
}

// AddReaderStats adds a reader's statistics (taken with Reader.Stats, which resets them).
func (c *ClientCollector) AddReaderStats(stage string, s kafka.ReaderStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add("cimstream_kafka_reader_fetches_total", stage, "reader", s.Fetches)
	c.add("cimstream_kafka_reader_messages_total", stage, "reader", s.Messages)
	c.add("cimstream_kafka_reader_bytes_total", stage, "reader", s.Bytes)
	c.add("cimstream_kafka_reader_errors_total", stage, "reader", s.Errors)
	c.add("cimstream_kafka_reader_timeouts_total", stage, "reader", s.Timeouts)
}

func (c *ClientCollector) add(metric, stage, client string, v int64) {
	c.totals[[3]string{metric, stage, client}] += float64(v)
}

// Describe implements prometheus.Collector.
func (c *ClientCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ClientCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, w := range c.writers {
		stage, name := splitKey(key)
		s := w.Stats()
		c.add("cimstream_kafka_writer_writes_total", stage, name, s.Writes)
		c.add("cimstream_kafka_writer_messages_total", stage, name, s.Messages)
		c.add("cimstream_kafka_writer_bytes_total", stage, name, s.Bytes)
		c.add("cimstream_kafka_writer_errors_total", stage, name, s.Errors)
		c.add("cimstream_kafka_writer_retries_total", stage, name, s.Retries)
	}
	for key, v := range c.totals {
		ch <- prometheus.MustNewConstMetric(c.descs[key[0]], prometheus.CounterValue, v, key[1], key[2])
	}
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

package kafkaedge

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
)

// Stats exports what the Kafka clients do: produce requests of the sinks (records, bytes, errors,
// latency) and kafka-go readers' statistics. kafka-go's Reader.Stats returns counts since the previous
// call, so readers hand them over themselves and they are accumulated here into monotonic counters.
type Stats struct {
	writes, messages, bytes, errors *prometheus.CounterVec
	produceSeconds                  *prometheus.HistogramVec

	mu      sync.Mutex
	readers map[[2]string]float64 // metric, stage → total
	descs   map[string]*prometheus.Desc

	throttleSeconds, throttled, requests *prometheus.Desc
}

var readerMetrics = []struct{ name, help string }{
	{"cimstream_kafka_reader_fetches_total", "Fetch requests sent by kafka-go readers."},
	{"cimstream_kafka_reader_messages_total", "Records received by kafka-go readers."},
	{"cimstream_kafka_reader_bytes_total", "Bytes received by kafka-go readers."},
	{"cimstream_kafka_reader_errors_total", "Fetch errors seen by kafka-go readers."},
	{"cimstream_kafka_reader_timeouts_total", "Fetch timeouts seen by kafka-go readers."},
}

// NewStats registers the client statistics on reg.
func NewStats(reg prometheus.Registerer) *Stats {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"stage", "client"})
	}
	s := &Stats{
		writes:   counter("cimstream_kafka_writer_writes_total", "Produce requests sent (one per broker and round)."),
		messages: counter("cimstream_kafka_writer_messages_total", "Records sent in produce requests."),
		bytes:    counter("cimstream_kafka_writer_bytes_total", "Bytes sent in produce requests (records as framed, before compression)."),
		errors:   counter("cimstream_kafka_writer_errors_total", "Produce requests that failed (for one partition or more)."),
		produceSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_kafka_produce_seconds",
			Help:    "Produce request round trips with acks=all.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 5}}, []string{"stage"}),
		readers: map[[2]string]float64{}, descs: map[string]*prometheus.Desc{},
		throttleSeconds: prometheus.NewDesc("cimstream_kafka_throttle_seconds_total",
			"Throttle time the broker named in produce and fetch responses (a client quota), added up.", []string{"request"}, nil),
		throttled: prometheus.NewDesc("cimstream_kafka_throttled_responses_total",
			"Produce and fetch responses that named a throttle time (a client quota).", []string{"request"}, nil),
		requests: prometheus.NewDesc("cimstream_kafka_requests_total",
			"Requests sent to the brokers through the shared client (sinks, readers, admin), by API.", []string{"api"}, nil),
	}
	for _, m := range readerMetrics {
		s.descs[m.name] = prometheus.NewDesc(m.name, m.help, []string{"stage", "client"}, nil)
	}
	reg.MustRegister(s.Collectors()...)
	return s
}

func (s *Stats) addWrite(stage string, records, bytes int, took time.Duration, err error) {
	if s == nil {
		return
	}
	s.writes.WithLabelValues(stage, "sink").Inc()
	// records and bytes are what the broker acknowledged: a request to one broker can succeed for some
	// partitions and fail for others.
	s.messages.WithLabelValues(stage, "sink").Add(float64(records))
	s.bytes.WithLabelValues(stage, "sink").Add(float64(bytes))
	if err != nil {
		s.errors.WithLabelValues(stage, "sink").Inc()
		return
	}
	s.produceSeconds.WithLabelValues(stage).Observe(took.Seconds())
}

func (s *Stats) addReader(stage string, r kafka.ReaderStats) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readers[[2]string{"cimstream_kafka_reader_fetches_total", stage}] += float64(r.Fetches)
	s.readers[[2]string{"cimstream_kafka_reader_messages_total", stage}] += float64(r.Messages)
	s.readers[[2]string{"cimstream_kafka_reader_bytes_total", stage}] += float64(r.Bytes)
	s.readers[[2]string{"cimstream_kafka_reader_errors_total", stage}] += float64(r.Errors)
	s.readers[[2]string{"cimstream_kafka_reader_timeouts_total", stage}] += float64(r.Timeouts)
}

// Describe implements prometheus.Collector (the reader counters).
func (s *Stats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
	ch <- s.throttleSeconds
	ch <- s.throttled
	ch <- s.requests
}

// Collect implements prometheus.Collector.
func (s *Stats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, v := range s.readers {
		ch <- prometheus.MustNewConstMetric(s.descs[key[0]], prometheus.CounterValue, v, key[1], "reader")
	}
	// Process-wide: every produce and fetch response of this process's clients.
	for request, total := range kafkaclient.ThrottleTotals() {
		ch <- prometheus.MustNewConstMetric(s.throttleSeconds, prometheus.CounterValue, total.Seconds, request)
		ch <- prometheus.MustNewConstMetric(s.throttled, prometheus.CounterValue, float64(total.Responses), request)
	}
	for api, n := range kafkaclient.RequestTotals() {
		ch <- prometheus.MustNewConstMetric(s.requests, prometheus.CounterValue, float64(n), api)
	}
}

// Collectors lists what NewStats registered, for listing metric names.
func (s *Stats) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.writes, s.messages, s.bytes, s.errors, s.produceSeconds, s}
}

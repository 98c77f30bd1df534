package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EgressBuckets reach a minute: a delivery includes its retries and its wait behind the customer's
// earlier messages.
var EgressBuckets = []float64{.005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30, 60, 300}

// Egress holds the webhook channels' metrics; the channel label takes configured channel names only.
type Egress struct {
	deliveries *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	oldest     *prometheus.GaugeVec
}

// AttemptResults are the values of the attempts' result label.
var AttemptResults = []string{"2xx", "3xx", "4xx", "5xx", "timeout", "error"}

// EgressOutcomes are the values of the deliveries' outcome label.
var EgressOutcomes = []string{"forwarded", "accepted", "rejected", "failed"}

// NewEgress registers the egress metrics on reg, with every series of channels at zero (the alert
// compares rates, which cannot see a series' first value).
func NewEgress(reg prometheus.Registerer, channels []string) *Egress {
	e := &Egress{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_egress_deliveries_total",
			Help: "Webhook messages settled, by channel and outcome: forwarded (200 with a notification), accepted (other 2xx), rejected (4xx), failed (no 2xx before the retry deadline)."},
			[]string{"channel", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_egress_attempts_total",
			Help: "Webhook POSTs, by channel and result: 2xx, 3xx, 4xx, 5xx, timeout, error."}, []string{"channel", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_egress_delivery_seconds",
			Help:    "From a webhook message's fetch to its outcome being recorded, retries and the wait behind the customer's earlier messages included.",
			Buckets: EgressBuckets}, []string{"channel"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cimstream_egress_oldest_pending_seconds",
			Help: "Age (from its record timestamp) of the oldest webhook message fetched and not yet settled, by channel; 0 when none."},
			[]string{"channel"}),
	}
	reg.MustRegister(e.Collectors()...)
	for _, ch := range channels {
		for _, o := range EgressOutcomes {
			e.deliveries.WithLabelValues(ch, o)
		}
		for _, r := range AttemptResults {
			e.attempts.WithLabelValues(ch, r)
		}
		e.oldest.WithLabelValues(ch)
	}
	return e
}

// Collectors lists the egress collectors.
func (e *Egress) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.deliveries, e.attempts, e.latency, e.oldest}
}

// Attempted implements egress.Observer.
func (e *Egress) Attempted(channel, result string) { e.attempts.WithLabelValues(channel, result).Inc() }

// Delivered implements egress.Observer.
func (e *Egress) Delivered(channel, outcome string, took time.Duration) {
	e.deliveries.WithLabelValues(channel, outcome).Inc()
	e.latency.WithLabelValues(channel).Observe(took.Seconds())
}

// OldestPending implements egress.Observer.
func (e *Egress) OldestPending(channel string, age time.Duration) {
	e.oldest.WithLabelValues(channel).Set(age.Seconds())
}

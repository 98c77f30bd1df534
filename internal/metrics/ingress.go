package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ingressMetrics are the HTTP ingress's: requests by route and status code, latency, requests in flight.
type ingressMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// IngressRoutes are the values of the route label ("other" for any other path).
var IngressRoutes = []string{"/cim-messages", "/ccm/message/receive", "other"}

func newIngressMetrics() ingressMetrics {
	return ingressMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cimstream_ingress_requests_total",
			Help: "HTTP ingress requests answered, by route and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cimstream_ingress_request_duration_seconds",
			Help: "From an ingress request's arrival to its answer (a 202 includes the acks=all write).", Buckets: LatencyBuckets}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cimstream_ingress_requests_in_flight",
			Help: "Ingress requests being handled now (ingress.maxConcurrent bounds those admitted)."}),
	}
}

func (i ingressMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{i.requests, i.duration, i.inFlight}
}

// initSeries creates the series the 5xx alert divides, so its first increase is seen.
func (i ingressMetrics) initSeries() {
	for _, r := range IngressRoutes[:2] {
		i.requests.WithLabelValues(r, "202")
		i.requests.WithLabelValues(r, "503")
		i.duration.WithLabelValues(r)
	}
}

// IngressRequest implements ingress.Observer.
func (m *Metrics) IngressRequest(route string, code int, took time.Duration) {
	m.ingress.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.ingress.duration.WithLabelValues(route).Observe(took.Seconds())
}

// IngressInFlight implements ingress.Observer.
func (m *Metrics) IngressInFlight(delta int) { m.ingress.inFlight.Add(float64(delta)) }

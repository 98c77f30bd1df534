package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sample is one gathered series: its labels and value (a histogram's sample count and sum).
type sample struct {
	labels     map[string]string
	value      float64
	count, sum float64
}

func gather(t *testing.T, reg *prometheus.Registry) map[string][]sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]sample{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{labels: map[string]string{}, value: m.GetCounter().GetValue() + m.GetGauge().GetValue(),
				count: float64(m.GetHistogram().GetSampleCount()), sum: m.GetHistogram().GetSampleSum()}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			out[mf.GetName()] = append(out[mf.GetName()], s)
		}
	}
	return out
}

// TestEgressSeriesExistAtZero: every outcome and attempt result of each configured channel exists before
// the first delivery, so the webhook alert's rates see the first failures; the observer methods reach the
// series they name.
func TestEgressSeriesExistAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := NewEgress(reg, []string{"web", "whatsapp"})
	s := gather(t, reg)
	if n := len(s["cimstream_egress_attempts_total"]); n != 2*len(AttemptResults) {
		t.Errorf("%d attempt series at start, want %d", n, 2*len(AttemptResults))
	}
	if n := len(s["cimstream_egress_deliveries_total"]); n != 2*len(EgressOutcomes) {
		t.Errorf("%d delivery series at start, want %d", n, 2*len(EgressOutcomes))
	}
	e.Attempted("web", "5xx")
	e.Delivered("web", "failed", 3*time.Second)
	e.OldestPending("web", 90*time.Second)
	s = gather(t, reg)
	for _, m := range s["cimstream_egress_attempts_total"] {
		want := 0.0
		if m.labels["channel"] == "web" && m.labels["result"] == "5xx" {
			want = 1
		}
		if m.value != want {
			t.Errorf("attempts %v = %v, want %v", m.labels, m.value, want)
		}
	}
	for _, m := range s["cimstream_egress_oldest_pending_seconds"] {
		if m.labels["channel"] == "web" && m.value != 90 {
			t.Errorf("oldest pending %v, want 90", m.value)
		}
	}
	if h := s["cimstream_egress_delivery_seconds"]; len(h) != 1 || h[0].count != 1 || h[0].sum != 3 {
		t.Errorf("delivery latency %v, want one sample of 3 s", h)
	}
}

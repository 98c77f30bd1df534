package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series gathers reg into name → the metrics of that family.
func series(t *testing.T, reg *prometheus.Registry) map[string][]*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf.GetMetric()
	}
	return out
}

// TestEgressSeriesExistAtZero: every outcome and attempt result of each configured channel exists before
// the first delivery, so the webhook alert's rates see the first failures; the observer methods reach the
// series they name.
func TestEgressSeriesExistAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := NewEgress(reg, []string{"web", "whatsapp"})
	s := series(t, reg)
	if n := len(s["cimstream_egress_attempts_total"]); n != 2*len(AttemptResults) {
		t.Errorf("%d attempt series at start, want %d", n, 2*len(AttemptResults))
	}
	if n := len(s["cimstream_egress_deliveries_total"]); n != 2*len(EgressOutcomes) {
		t.Errorf("%d delivery series at start, want %d", n, 2*len(EgressOutcomes))
	}
	e.Attempted("web", "5xx")
	e.Delivered("web", "failed", 3*time.Second)
	e.OldestPending("web", 90*time.Second)
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	s = series(t, reg)
	for _, m := range s["cimstream_egress_attempts_total"] {
		want := 0.0
		if label(m, "channel") == "web" && label(m, "result") == "5xx" {
			want = 1
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("attempts %s/%s = %v, want %v", label(m, "channel"), label(m, "result"), got, want)
		}
	}
	for _, m := range s["cimstream_egress_oldest_pending_seconds"] {
		if label(m, "channel") == "web" && m.GetGauge().GetValue() != 90 {
			t.Errorf("oldest pending %v, want 90", m.GetGauge().GetValue())
		}
	}
	h := s["cimstream_egress_delivery_seconds"]
	if len(h) != 1 || h[0].GetHistogram().GetSampleCount() != 1 || h[0].GetHistogram().GetSampleSum() != 3 {
		t.Errorf("delivery latency %v, want one sample of 3 s", h)
	}
}

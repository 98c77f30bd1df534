package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// TestAlertedSeriesExistAtZero: the series the alert rules take rate() or increase() of exist before
// the first event, so the first failure is an increase Prometheus can see.
func TestAlertedSeriesExistAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			have = append(have, mf.GetName()+"{"+strings.Join(labels, ",")+"}")
		}
	}
	all := strings.Join(have, " ")
	for _, st := range Stages {
		for _, name := range []string{"cimstream_write_retries_total", "cimstream_write_failures_total", "cimstream_fetch_failures_total"} {
			if want := name + "{stage=" + st + "}"; !strings.Contains(all, want) {
				t.Errorf("%s does not exist at start", want)
			}
		}
	}
	for _, want := range []string{"cimstream_notifications_total{reason_code=500,status=FAILED}", "cimstream_state_restore_seconds{stage=inbound-sessions}"} {
		if !strings.Contains(all, want) {
			t.Errorf("%s does not exist at start", want)
		}
	}
}

// TestStageLabelEverywhere: dead letters, validation failures and unknown intents carry the stage label
// the flow metrics carry, so rules divide one by the other without relabelling.
func TestStageLabelEverywhere(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Consumed("inbound-ingest", "cim.inbound.web", 10)
	m.DeadLettered("inbound-ingest", stream.Record{}, []string{"malformed", "missing_field"})
	m.UnknownIntent("inbound-ingest")
	for name, want := range map[string]float64{
		`cimstream_records_consumed_total`:    10,
		`cimstream_dead_letters_total`:        1,
		`cimstream_validation_failures_total`: 2,
		`cimstream_unknown_intents_total`:     1,
	} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, s := range mf.GetMetric() {
				stage := ""
				for _, l := range s.GetLabel() {
					if l.GetName() == "pipeline" {
						t.Errorf("%s still has a pipeline label", name)
					}
					if l.GetName() == "stage" {
						stage = l.GetValue()
					}
				}
				if stage == "inbound-ingest" {
					got += s.GetCounter().GetValue()
				}
			}
		}
		if got != want {
			t.Errorf(`%s{stage="inbound-ingest"} = %v, want %v`, name, got, want)
		}
	}
}

// TestStepHistogram: a step observed through the stage runtime's optional interface lands in
// cimstream_stage_step_seconds by stage and step.
func TestStepHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	var obs stage.Observer = New(reg)
	steps, ok := obs.(stage.StepObserver)
	if !ok {
		t.Fatal("Metrics does not implement stage.StepObserver: the stage trace would be dropped")
	}
	steps.Step("inbound-sessions", stage.StepAck, 3*time.Millisecond)
	steps.Step("inbound-sessions", stage.StepAck, -time.Millisecond) // a clock step back is not a sample
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "cimstream_stage_step_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			count += s.GetHistogram().GetSampleCount()
			sum += s.GetHistogram().GetSampleSum()
		}
	}
	if count != 1 || sum < 0.0029 || sum > 0.0031 {
		t.Errorf("cimstream_stage_step_seconds: %d samples summing to %v s, want 1 of 0.003 s", count, sum)
	}
}

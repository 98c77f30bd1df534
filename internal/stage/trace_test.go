package stage

import (
	"sync"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// stepRecorder is an Observer that also records the steps of each batch.
type stepRecorder struct {
	NopObserver
	mu    sync.Mutex
	steps map[string][]time.Duration
}

func (s *stepRecorder) Step(stage, step string, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps[stage+"/"+step] = append(s.steps[stage+"/"+step], took)
}

func (s *stepRecorder) get(key string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.steps[key]...)
}

// TestStepsAreTraced: each batch reports how long its records waited before the fetch, the handler, the
// wait for the write and the write itself, with the stage's name.
func TestStepsAreTraced(t *testing.T) {
	recs := records("a:1", "b:2", "c:3", "d:4", "e:5", "f:6")
	old := time.Now().Add(-300 * time.Millisecond)
	for i := range recs {
		recs[i].Time = old
	}
	slow := handlerFunc(func(batch []stream.Record) []stream.Result {
		time.Sleep(20 * time.Millisecond)
		return echo(batch)
	})
	obs := &stepRecorder{steps: map[string][]time.Duration{}}
	sink := &fakeSink{fail: func(int, stream.Output) error { time.Sleep(5 * time.Millisecond); return nil }}
	run := start(t, slow, sink, recs, func(c *Config) { c.Name, c.Observer = "traced", obs })
	if !eventually(func() bool { return len(run.sink.topics()["out"]) == len(recs) }) {
		t.Fatalf("wrote %d of %d records", len(run.sink.topics()["out"]), len(recs))
	}
	batches := len(obs.get("traced/" + StepDecide))
	if batches < 2 {
		t.Fatalf("decide observed %d times, want one per batch (2 or more for 6 records in batches of 3)", batches)
	}
	checks := []struct {
		step string
		min  time.Duration
	}{{StepFetch, 300 * time.Millisecond}, {StepDecide, 20 * time.Millisecond}, {StepProduce, 0}, {StepAck, 5 * time.Millisecond}}
	for _, c := range checks {
		got := obs.get("traced/" + c.step)
		if len(got) != batches {
			t.Errorf("%s observed %d times for %d batches", c.step, len(got), batches)
		}
		for _, d := range got {
			if d < c.min {
				t.Errorf("%s took %v, want at least %v", c.step, d, c.min)
			}
		}
	}
	if n := len(obs.get("traced/" + StepLock)); n != 0 {
		t.Errorf("lock observed %d times for a stage without a middleware", n)
	}
}

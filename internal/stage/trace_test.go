package stage_test

import (
	"sync"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// stepRecorder is an Observer that also records the steps of each batch.
type stepRecorder struct {
	stage.NopObserver
	mu    sync.Mutex
	steps map[string][]time.Duration
}

func (s *stepRecorder) Step(name, step string, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps[name+"/"+step] = append(s.steps[name+"/"+step], took)
}

func (s *stepRecorder) get(key string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.steps[key]...)
}

// TestStepsAreTraced: each batch reports how long its records waited before the fetch, the handler, the
// wait for the write and the write itself, with the stage's name.
func TestStepsAreTraced(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	recs := inputs("a:1", "b:2", "c:3", "d:4", "e:5", "f:6")
	old := time.Now().Add(-300 * time.Millisecond)
	for i := range recs {
		recs[i].Time = old
	}
	produce(t, b, recs)
	slow := handlerFunc(func(batch []stream.Record) []stream.Result {
		time.Sleep(20 * time.Millisecond)
		return echo(batch)
	})
	obs := &stepRecorder{steps: map[string][]time.Duration{}}
	b.Fail = func(int, stream.Output) error { time.Sleep(5 * time.Millisecond); return nil }
	start(t, b, b, slow, func(c *stage.Config) { c.Name, c.Observer = "traced", obs })
	// Committed only once the last batch's write returned (and was timed).
	if !eventually(func() bool { return committed(b, "in", 0) == int64(len(recs)) }) {
		t.Fatalf("committed %d of %d records", committed(b, "in", 0), len(recs))
	}
	batches := len(obs.get("traced/" + stage.StepDecide))
	if batches < 2 {
		t.Fatalf("decide observed %d times, want one per batch (2 or more for 6 records in batches of 3)", batches)
	}
	checks := []struct {
		step string
		min  time.Duration
	}{{stage.StepFetch, 300 * time.Millisecond}, {stage.StepDecide, 20 * time.Millisecond}, {stage.StepProduce, 0}, {stage.StepAck, 5 * time.Millisecond}}
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
	if n := len(obs.get("traced/" + stage.StepLock)); n != 0 {
		t.Errorf("lock observed %d times for a stage without a middleware", n)
	}
}

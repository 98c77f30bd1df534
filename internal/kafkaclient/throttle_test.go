package kafkaclient

import (
	"testing"
	"time"
)

func TestThrottledAddsUpPerRequestKind(t *testing.T) {
	before := ThrottleTotals()
	Throttled("produce", 250*time.Millisecond)
	Throttled("produce", 0) // not throttled: not counted
	Throttled("fetch", time.Second)
	Throttled("fetch", 500*time.Millisecond)
	after := ThrottleTotals()
	if d := after["produce"].Seconds - before["produce"].Seconds; d != 0.25 {
		t.Errorf("produce seconds grew by %v, want 0.25", d)
	}
	if d := after["produce"].Responses - before["produce"].Responses; d != 1 {
		t.Errorf("produce responses grew by %d, want 1", d)
	}
	if d := after["fetch"].Seconds - before["fetch"].Seconds; d != 1.5 {
		t.Errorf("fetch seconds grew by %v, want 1.5", d)
	}
	if d := after["fetch"].Responses - before["fetch"].Responses; d != 2 {
		t.Errorf("fetch responses grew by %d, want 2", d)
	}
}

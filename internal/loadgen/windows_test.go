package loadgen

import (
	"testing"
	"time"
)

// TestWindows: samples land in the window of their send time, each window with its own percentiles.
func TestWindows(t *testing.T) {
	origin := time.Unix(1000, 0)
	var samples []Sample
	add := func(at time.Duration, lat time.Duration, n int) {
		for range n {
			samples = append(samples, Sample{Sent: origin.Add(at), Latency: lat})
		}
	}
	add(-time.Second, time.Hour, 5) // before the origin: left out
	add(100*time.Millisecond, 300*time.Millisecond, 100)
	add(1500*time.Millisecond, 50*time.Millisecond, 100)
	add(3200*time.Millisecond, 3*time.Millisecond, 99)
	add(3300*time.Millisecond, 15*time.Millisecond, 1)
	ws := Windows(samples, origin, time.Second)
	if len(ws) != 4 {
		t.Fatalf("%d windows, want 4: %+v", len(ws), ws)
	}
	want := []struct {
		n        int
		p99, max time.Duration
	}{{100, 300 * time.Millisecond, 300 * time.Millisecond}, {100, 50 * time.Millisecond, 50 * time.Millisecond}, {0, 0, 0},
		{100, 15 * time.Millisecond, 15 * time.Millisecond}}
	for i, w := range want {
		if ws[i].From != time.Duration(i)*time.Second || ws[i].Matched != w.n || ws[i].P99 != w.p99 || ws[i].Max != w.max {
			t.Errorf("window %d = %+v, want from %ds, %d matched, p99 %v, max %v", i, ws[i], i, w.n, w.p99, w.max)
		}
	}
	if from, ok := SteadyFrom(ws, 20*time.Millisecond); !ok || from != 2*time.Second {
		t.Errorf("steady from %v (%v), want 2s: the end of the last window above 20 ms", from, ok)
	}
	if _, ok := SteadyFrom(ws[:2], 20*time.Millisecond); ok {
		t.Error("steady although the last window is above the limit")
	}
	if _, ok := SteadyFrom(nil, 20*time.Millisecond); ok {
		t.Error("steady without any window")
	}
}

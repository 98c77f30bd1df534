package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/loadgen"
)

// TestSummarizeStartup: slow windows after the start and after the join set the steady times, counted
// from the start and from the join; the 5–25 s figure takes only what was sent in that span.
func TestSummarizeStartup(t *testing.T) {
	origin := time.Unix(5000, 0)
	var samples []loadgen.Sample
	for s := 0; s < 40; s++ {
		lat := 5 * time.Millisecond
		if s < 3 || s == 21 || s == 22 { // slow until 3 s, and for 2 s after a join at 20 s
			lat = 300 * time.Millisecond
		}
		for i := 0; i < 100; i++ {
			samples = append(samples, loadgen.Sample{Sent: origin.Add(time.Duration(s)*time.Second + time.Duration(i)*10*time.Millisecond), Latency: lat})
		}
	}
	fig := summarizeStartup(StartupFigure{JoinAt: 20}, samples, origin, 20*time.Second)
	if fig.SteadyAfter != 3 || fig.SteadyAfterJoin != 3 {
		t.Errorf("steady after %v s and %v s after the join, want 3 and 3", fig.SteadyAfter, fig.SteadyAfterJoin)
	}
	if fig.From5s.Matched != 2000 || fig.From5s.Max != 300*time.Millisecond {
		t.Errorf("5–25 s: %+v, want 2000 matched with the join's 300 ms as max", fig.From5s)
	}
	table := startupTable(&fig)
	if !strings.Contains(table, "| 20–21 (second instance starts) |") || strings.Contains(table, "| 15–16 |") {
		t.Errorf("table lacks the join's window or shows windows between the first 10 and the join:\n%s", table)
	}
}

package main

import (
	"bufio"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseConsumerPerformance(t *testing.T) {
	out := "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n" +
		"2026-12-07 14:10:01:123, 2026-12-07 14:10:06:123, 195.3125, 39.0625, 200000, 40000.0000, 3000, 2000, 97.6563, 100000.0000\n"
	fig, ok := parseConsumerPerformance(out)
	if !ok || fig.Records != 200000 || fig.Seconds != 2 || math.Abs(fig.PerSecond-100000) > 1e-6 {
		t.Fatalf("got %+v (%v), want 200000 records in 2 s (the fetch time, without the join)", fig, ok)
	}
	if _, ok := parseConsumerPerformance("WARN something, else\n"); ok {
		t.Error("a summary found in output without one")
	}
}

func TestParseRequests(t *testing.T) {
	text := `# HELP cimstream_kafka_requests_total Requests sent.
# TYPE cimstream_kafka_requests_total counter
cimstream_kafka_requests_total{api="Fetch"} 1234
cimstream_kafka_requests_total{api="Produce"} 5.5e+02
cimstream_kafka_requests_total_other{api="Produce"} 7
cimstream_kafka_writer_writes_total{client="sink",stage="x"} 9
`
	got, err := parseRequests(bufio.NewScanner(strings.NewReader(text)))
	if err != nil || got["Fetch"] != 1234 || got["Produce"] != 550 || len(got) != 2 {
		t.Fatalf("got %v (%v), want Fetch 1234 and Produce 550 only", got, err)
	}
}

func TestCPUSecondsOfThisProcess(t *testing.T) {
	if s := cpuSeconds(-1); s != 0 {
		t.Errorf("cpuSeconds(-1) = %v, want 0", s)
	}
	// Busy for up to 2 s: the counters move in hundredths of a second.
	for deadline := time.Now().Add(2 * time.Second); cpuSeconds(os.Getpid()) < 0.05 && time.Now().Before(deadline); {
		for i := 0; i < 1e6; i++ {
			spin += math.Sqrt(float64(i))
		}
	}
	if s := cpuSeconds(os.Getpid()); s <= 0 {
		t.Errorf("cpuSeconds of this process = %v after a busy loop, want > 0", s)
	}
}

var spin float64

func TestDeltaP99(t *testing.T) {
	before := map[float64]float64{0.001: 10, 0.01: 10, 0.1: 10, math.Inf(1): 10}
	after := map[float64]float64{0.001: 60, 0.01: 108, 0.1: 110, math.Inf(1): 110}
	// 100 new observations: 50 ≤ 1 ms, 98 ≤ 10 ms, all ≤ 100 ms: the 99th is in the 100 ms bucket.
	if le, n := deltaP99(before, after); le != 0.1 || n != 100 {
		t.Errorf("deltaP99 = %v over %v, want 0.1 over 100", le, n)
	}
	if le, n := deltaP99(after, after); le != 0 || n != 0 {
		t.Errorf("deltaP99 without new observations = %v over %v, want 0, 0", le, n)
	}
}

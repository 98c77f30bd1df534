package main

import (
	"bufio"
	"cmp"
	"context"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stepBucket is one cimstream_stage_step_seconds bucket line: stage, step, upper bound, count.
var stepBucket = regexp.MustCompile(`^cimstream_stage_step_seconds_bucket\{(?:[^}]*,)?stage="([^"]+)",step="([^"]+)",le="([^"]+)"\} (\S+)`)

// stepCounts is a scrape of the step histograms: cumulative count by "stage/step" and upper bound.
type stepCounts map[string]map[float64]float64

// traceSnap is one scrape of an instance, with when it was taken.
type traceSnap struct {
	at     time.Time
	counts stepCounts
}

// tracer scrapes the step histograms of instances every second, and samples the machine beside them.
type tracer struct {
	mu    sync.Mutex
	snaps map[string][]traceSnap // by instance
	host  []hostSnap
}

// hostSnap is the broker's CPU time and the kernel's dirty and writeback page cache at one moment: work
// left by earlier scenarios (log cleaning, page writeback) competes with the one measured.
type hostSnap struct {
	at                time.Time
	brokerCPU, dirtyM float64
}

// everySecond calls f now and then every second until ctx ends.
func everySecond(ctx context.Context, f func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sampleHost records a hostSnap every second until ctx ends.
func (t *tracer) sampleHost(ctx context.Context) {
	everySecond(ctx, func() {
		t.mu.Lock()
		t.host = append(t.host, hostSnap{at: time.Now(), brokerCPU: cpuSeconds(broker), dirtyM: dirtyMiB()})
		t.mu.Unlock()
	})
}

// HostWindow is the broker's CPU use and the dirty page cache over one 1 s window.
type HostWindow struct {
	From      float64 `json:"from_seconds"`
	BrokerCPU float64 `json:"broker_cpu_cores"`
	DirtyMiB  float64 `json:"dirty_mib"`
}

// hostWindows turns the host samples into one HostWindow per interval, placed by its start.
func (t *tracer) hostWindows(origin time.Time) []HostWindow {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []HostWindow
	for i := 1; i < len(t.host); i++ {
		a, b := t.host[i-1], t.host[i]
		if d := b.at.Sub(a.at).Seconds(); d > 0 && a.at.After(origin.Add(-time.Second)) {
			out = append(out, HostWindow{From: math.Floor(a.at.Sub(origin).Seconds()), BrokerCPU: (b.brokerCPU - a.brokerCPU) / d, DirtyMiB: b.dirtyM})
		}
	}
	return out
}

// watch scrapes addr's /metrics every second as who until ctx ends.
func (t *tracer) watch(ctx context.Context, who, addr string) {
	c := http.Client{Timeout: time.Second}
	everySecond(ctx, func() {
		if counts, err := scrapeSteps(&c, addr); err == nil {
			t.mu.Lock()
			t.snaps[who] = append(t.snaps[who], traceSnap{at: time.Now(), counts: counts})
			t.mu.Unlock()
		}
	})
}

func scrapeSteps(c *http.Client, addr string) (stepCounts, error) {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := stepCounts{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := stepBucket.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		le, err1 := strconv.ParseFloat(m[3], 64)
		n, err2 := strconv.ParseFloat(m[4], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		key := m[1] + "/" + m[2]
		if out[key] == nil {
			out[key] = map[float64]float64{}
		}
		out[key][le] = n
	}
	return out, sc.Err()
}

// StepWindow is, for one instance and one window, the step whose p99 (a bucket's upper bound) was highest.
type StepWindow struct {
	From     float64 `json:"from_seconds"`
	Instance string  `json:"instance"`
	Step     string  `json:"step"` // stage/step
	P99      float64 `json:"p99_le_seconds"`
	Batches  float64 `json:"batches"`
}

// slowest gives, for each instance and each interval between scrapes, the slowest step by p99, with the
// interval placed in the 1 s window of origin it starts in.
func (t *tracer) slowest(origin time.Time) []StepWindow {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []StepWindow
	for who, snaps := range t.snaps {
		for i := 1; i < len(snaps); i++ {
			w := StepWindow{From: math.Floor(snaps[i-1].at.Sub(origin).Seconds()), Instance: who}
			for key, buckets := range snaps[i].counts {
				p99, n := deltaP99(snaps[i-1].counts[key], buckets)
				if p99 > w.P99 {
					w.Step, w.P99 = key, p99
				}
				if strings.HasSuffix(key, "/decide") {
					w.Batches += n
				}
			}
			if w.Step != "" {
				out = append(out, w)
			}
		}
	}
	slices.SortFunc(out, func(a, b StepWindow) int {
		return cmp.Or(cmp.Compare(a.From, b.From), strings.Compare(a.Instance, b.Instance))
	})
	return out
}

// deltaP99 is the upper bound of the bucket holding the 99th percentile of the observations between two
// cumulative scrapes, and how many there were (0, 0 when none).
func deltaP99(before, after map[float64]float64) (float64, float64) {
	bounds := slices.Sorted(maps.Keys(after))
	if len(bounds) == 0 {
		return 0, 0
	}
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0, 0
	}
	for _, le := range bounds {
		if after[le]-before[le] >= 0.99*total {
			return le, total
		}
	}
	return bounds[len(bounds)-1], total
}

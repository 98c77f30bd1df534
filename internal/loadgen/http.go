package loadgen

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"
)

// HTTPOptions describe an open-loop HTTP load: request i is due at start + i/Rate whatever the answers
// take, and its latency counts from when it was due, so a slow server cannot hide its queueing
// (no coordinated omission).
type HTTPOptions struct {
	URL      string
	Rate     float64
	Duration time.Duration
	// MaxInFlight bounds the requests outstanding; a request due while it is reached counts as Dropped.
	MaxInFlight int
	Body        func(i int) []byte
	Header      http.Header
}

// HTTPStats are the outcome of an HTTP load.
type HTTPStats struct {
	Sent     int64         `json:"sent"`
	Accepted int64         `json:"accepted"` // 2xx
	Failed   int64         `json:"failed"`   // other statuses and transport errors
	Dropped  int64         `json:"dropped"`  // never sent: MaxInFlight outstanding
	Elapsed  time.Duration `json:"elapsed"`
	Latency  Latencies     `json:"latency"` // of the 2xx answers, from when each was due
}

// Throughput is 2xx answers per second.
func (s HTTPStats) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Accepted) / s.Elapsed.Seconds()
}

// RunHTTP sends the load with client and waits for every answer.
func RunHTTP(ctx context.Context, client *http.Client, opts HTTPOptions) HTTPStats {
	interval := time.Duration(float64(time.Second) / opts.Rate)
	n := int(opts.Rate * opts.Duration.Seconds())
	slots := make(chan struct{}, max(1, opts.MaxInFlight))
	var mu sync.Mutex
	var st HTTPStats
	lat := make([]time.Duration, 0, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case slots <- struct{}{}:
		default:
			st.Dropped++
			continue
		}
		st.Sent++
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, opts.URL, bytes.NewReader(opts.Body(i)))
			maps.Copy(req.Header, opts.Header)
			resp, err := client.Do(req)
			ok := err == nil && resp.StatusCode/100 == 2
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			took := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				st.Accepted++
				lat = append(lat, took)
			} else {
				st.Failed++
			}
		}()
	}
	wg.Wait()
	st.Elapsed = time.Since(start)
	st.Latency = summarize(lat)
	return st
}

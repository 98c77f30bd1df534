package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/ingress"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/loadgen"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// IngressFigure is the ingress measured beside its baseline at one fixed rate.
type IngressFigure struct {
	Rate     float64           `json:"rate"`
	Seconds  float64           `json:"seconds"`
	Baseline loadgen.HTTPStats `json:"baseline"`
	Ingress  loadgen.HTTPStats `json:"ingress"`
}

// bareProducer is the baseline: a net/http handler that only produces the body to Kafka through the
// same sink (acks=all, Murmur2) and answers 202. No validation, auth, idempotency or limits.
type bareProducer struct {
	sink  *kafkaedge.Sink
	topic string
}

func (b bareProducer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	out := stream.Output{Topic: b.topic, Partition: stream.ByKey, Value: body, Time: time.Now()}
	if err := b.sink.Write(r.Context(), []stream.Output{out})[0]; err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// serveHTTP serves h on a free loopback port until the returned stop is called.
func serveHTTP(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/cim-messages", func() { _ = srv.Close() }, nil
}

// ingressFigures measures the ingress and its baseline for 10 s at each rate.
func ingressFigures(f *kafkaclient.Factory, base config.Config, prefix string) ([]IngressFigure, error) {
	var figs []IngressFigure
	for _, rate := range []float64{1000, 2000} {
		fmt.Fprintf(os.Stderr, "bench: HTTP ingress and its baseline at %.0f req/s\n", rate)
		fig, err := ingressBench(f, base, fmt.Sprintf("%s%.0f.", prefix, rate), rate, 10*time.Second)
		if err != nil {
			return figs, err
		}
		figs = append(figs, fig)
	}
	return figs, nil
}

// ingressBench measures the ingress and the bare producer at the same fixed rate, one after the other, each
// writing to a topic of its own with the same client settings; the load generator runs in the same process.
func ingressBench(f *kafkaclient.Factory, base config.Config, prefix string, rate float64, d time.Duration) (IngressFigure, error) {
	cfg := base
	setTopics(&cfg, prefix+"http.")
	cfg.Inbound.Enabled, cfg.Outbound.Enabled = false, false
	channel := prefix + "http"
	baseTopic := prefix + "http.baseline"
	cfg.Channels = map[string]string{"web": channel}
	cfg.Ingress.Address = "127.0.0.1:0"
	cfg.Ingress.MaxConcurrent = 1024
	if err := createTopics(f, cfg, baseTopic); err != nil {
		return IngressFigure{}, err
	}
	gen := loadgen.NewGenerator(loadgen.Options{Direction: cim.Inbound, Topics: []string{"unused"}, Customers: 5000, Size: size, RunID: prefix})
	body := func(i int) []byte { _, _, v, _ := gen.Message(i); return v }
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}, Timeout: 30 * time.Second}
	load := func(h http.Handler, runID string) (loadgen.HTTPStats, error) {
		url, stop, err := serveHTTP(h)
		if err != nil {
			return loadgen.HTTPStats{}, err
		}
		defer stop()
		// Warm up connections and metadata, then measure.
		loadgen.RunHTTP(context.Background(), client, loadgen.HTTPOptions{URL: url, Rate: 200, Duration: time.Second, MaxInFlight: 1024,
			Body: func(i int) []byte { return body(1_000_000_000 + i) }, Header: http.Header{"Content-Type": {"application/json"}}})
		st := loadgen.RunHTTP(context.Background(), client, loadgen.HTTPOptions{URL: url, Rate: rate, Duration: d, MaxInFlight: 1024,
			Body: body, Header: http.Header{"Content-Type": {"application/json"}}})
		if st.Failed > 0 {
			return st, fmt.Errorf("%s: %d requests failed", runID, st.Failed)
		}
		return st, nil
	}
	fig := IngressFigure{Rate: rate, Seconds: d.Seconds()}
	var err error
	if fig.Baseline, err = load(bareProducer{sink: kafkaedge.NewSink(f, "bench-baseline", nil), topic: baseTopic}, "baseline"); err != nil {
		return fig, err
	}
	srv, err := ingress.NewServer(cfg, kafkaedge.NewSink(f, "ingress", nil), nil, log)
	if err != nil {
		return fig, err
	}
	fig.Ingress, err = load(srv.Handler(), "ingress")
	return fig, err
}

func ingressTable(figs []IngressFigure) string {
	s := "\nHTTP ingress at a fixed rate (open loop, 1 KiB messages, latency from each request's due time to its 202), beside a bare net/http handler that only produces to Kafka with the same sink, measured in the same run:\n\n" +
		"| rate | handler | 202/s | dropped | p50 | p99 | max |\n|---|---|---|---|---|---|---|\n"
	for _, f := range figs {
		for _, row := range []struct {
			name string
			st   loadgen.HTTPStats
		}{{"baseline (produce only)", f.Baseline}, {"cimstream ingress", f.Ingress}} {
			s += fmt.Sprintf("| %.0f req/s | %s | %.0f | %d | %.1f ms | %.1f ms | %.1f ms |\n", f.Rate, row.name, row.st.Throughput(), row.st.Dropped,
				ms(row.st.Latency.P50), ms(row.st.Latency.P99), ms(row.st.Latency.Max))
		}
	}
	return s
}

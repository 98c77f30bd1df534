package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/loadgen"
)

// steadyLimit is the p99 a window must stay at or under for latency to count as steady.
const steadyLimit = 20 * time.Millisecond

// StartupFigure is end-to-end latency from the moment an instance starts: keyed traffic at Rate from the
// process start on, a second instance started JoinAt later, each 1 s window of send times summarized.
type StartupFigure struct {
	Rate     float64          `json:"rate"`
	Seconds  float64          `json:"seconds"`
	JoinAt   float64          `json:"join_at_seconds"`
	Windows  []loadgen.Window `json:"windows"`
	Matched  int              `json:"matched"`
	Expected int              `json:"expected"`
	// SteadyAfter is the seconds from the start until every later window before the join has p99 ≤ 20 ms
	// (-1: never); SteadyAfterJoin the same from the second instance's start to the end of the run.
	SteadyAfter     float64 `json:"steady_after_seconds"`
	SteadyAfterJoin float64 `json:"steady_after_join_seconds"`
	// From5s is the messages sent from 5 s to 25 s after the start: the window the latency figure measures.
	From5s loadgen.Latencies `json:"from_5s"`
	// Steps is, per instance and window, the stage step with the highest p99 (cimstream_stage_step_seconds).
	Steps []StepWindow `json:"steps,omitempty"`
	// Host is the broker's CPU use and the dirty page cache per window.
	Host []HostWindow `json:"host,omitempty"`
	// Logs are the instances' log files (info level), for the rebalance's timeline.
	Logs []string `json:"-"`
}

// startupBench starts an instance and, at the same moment, keyed traffic at rate for d; a second
// instance starts at join. Latency is read in 1 s windows of send time from the first start.
func startupBench(f *kafkaclient.Factory, base config.Config, prefix string, rate float64, d, join time.Duration) (StartupFigure, error) {
	cfg := base
	setTopics(&cfg, prefix)
	cfg.Outbound.Enabled = false
	cfg.Topics.InboundChannels = []string{prefix + config.InboundTopic("web")}
	cfg.Topics.InboundPattern = config.InboundPattern(prefix)
	cfg.Log.Level, cfg.Log.Format = cmp.Or(os.Getenv("BENCH_LOG_LEVEL"), "info"), "json"
	if err := createTopics(f, cfg); err != nil {
		return StartupFigure{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	p, samples := measuredLoad(ctx, f, cfg, rate, d, fmt.Sprintf("start%.0f", rate), int(rate*d.Seconds()*0.99))
	defer p.Close()
	fig := StartupFigure{Rate: rate, Seconds: d.Seconds(), JoinAt: join.Seconds(), Expected: int(rate * d.Seconds())}
	first, origin, err := startLogged(cfg, "first")
	if err != nil {
		return fig, err
	}
	defer first.stop()
	fig.Logs = append(fig.Logs, first.log)
	trace := &tracer{snaps: map[string][]traceSnap{}}
	go trace.watch(ctx, "first", first.addr)
	go trace.sampleHost(ctx)
	secondLog, secondDone := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(secondDone)
		time.Sleep(time.Until(origin.Add(join)))
		second, _, err := startLogged(cfg, "second")
		if err != nil {
			return
		}
		secondLog <- second.log
		go trace.watch(ctx, "second", second.addr)
		<-ctx.Done()
		second.stop()
	}()
	p.Run(ctx)
	got := <-samples
	cancel()
	<-secondDone
	select {
	case l := <-secondLog:
		fig.Logs = append(fig.Logs, l)
	default:
	}
	fig.Steps, fig.Host = trace.slowest(origin), trace.hostWindows(origin)
	return summarizeStartup(fig, got, origin, join), nil
}

// summarizeStartup fills fig's windows and steady times from the samples of a run started at origin.
func summarizeStartup(fig StartupFigure, samples []loadgen.Sample, origin time.Time, join time.Duration) StartupFigure {
	fig.Matched = len(samples)
	fig.Windows = loadgen.Windows(samples, origin, time.Second)
	joinAt := min(int(join/time.Second), len(fig.Windows))
	fig.SteadyAfter, fig.SteadyAfterJoin = -1, -1
	if from, ok := loadgen.SteadyFrom(fig.Windows[:joinAt], steadyLimit); ok {
		fig.SteadyAfter = from.Seconds()
	}
	if from, ok := loadgen.SteadyFrom(fig.Windows[joinAt:], steadyLimit); ok {
		fig.SteadyAfterJoin = (from - join).Seconds()
	}
	var early []loadgen.Sample
	for _, s := range samples {
		if at := s.Sent.Sub(origin); at >= 5*time.Second && at < 25*time.Second {
			early = append(early, s)
		}
	}
	fig.From5s = loadgen.Summarize(early)
	return fig
}

// instance is a running binary whose log goes to a file.
type instance struct {
	addr string
	log  string
	stop func()
}

// startLogged starts the binary on cfg, its log in a temporary file named for who; it returns the time
// the process started.
func startLogged(cfg config.Config, who string) (instance, time.Time, error) {
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("cimstream-bench-start-%s-%d.log", who, time.Now().UnixNano()))
	out, err := os.Create(logPath)
	if err != nil {
		return instance{}, time.Time{}, err
	}
	addr, err := freeAddr()
	if err != nil {
		out.Close()
		return instance{}, time.Time{}, err
	}
	started := time.Now()
	_, stop, err := startCimstream(cfg, addr, out)
	if err != nil {
		out.Close()
		return instance{}, started, err
	}
	fmt.Fprintf(os.Stderr, "bench: %s instance: admin %s, log %s\n", who, addr, logPath)
	return instance{addr: addr, log: logPath, stop: func() { stop(); out.Close() }}, started, nil
}

// startupTable prints the windows of a StartupFigure.
func startupTable(s *StartupFigure) string {
	if s == nil {
		return ""
	}
	var b []byte
	b = fmt.Appendf(b, "\nLatency from the process start (loadgen at %.0f msg/s keyed from the moment the binary starts, a second instance started %.0f s later; 1 s windows of send time, the first 10, those around the join and the last below, every one in bench/results.json; %d of %d matched): steady (every later window p99 ≤ 20 ms) %s after the start and %s after the second instance started. The messages sent 5–25 s after the start (the window of the latency table): p50 %.1f ms, p99 %.1f ms, p999 %.1f ms.\n\n",
		s.Rate, s.JoinAt, s.Matched, s.Expected, steadyText(s.SteadyAfter), steadyText(s.SteadyAfterJoin), ms(s.From5s.P50), ms(s.From5s.P99), ms(s.From5s.P999))
	b = append(b, "| window (s from start) | matched | p50 | p99 | max | slowest step by p99: first instance | second instance | broker CPU | dirty pages |\n|---|---|---|---|---|---|---|---|---|\n"...)
	host := map[float64]HostWindow{}
	for _, h := range s.Host {
		host[h.From] = h
	}
	steps := map[string]string{}
	for _, st := range s.Steps {
		steps[fmt.Sprintf("%.0f/%s", st.From, st.Instance)] = fmt.Sprintf("%s ≤ %s (%.0f batches)", st.Step, boundText(st.P99), st.Batches)
	}
	join := int(s.JoinAt)
	for i, w := range s.Windows {
		// The first 10 s and the join in full; the others are in bench/results.json.
		if i >= 10 && (i < join-1 || i > join+5) && i != len(s.Windows)-1 {
			continue
		}
		mark := ""
		if w.From == time.Duration(s.JoinAt)*time.Second {
			mark = " (second instance starts)"
		}
		at := w.From.Seconds()
		h := host[at]
		b = fmt.Appendf(b, "| %.0f–%.0f%s | %d | %.1f ms | %.1f ms | %.1f ms | %s | %s | %.2f cores | %.0f MiB |\n", at, at+1, mark, w.Matched, ms(w.P50), ms(w.P99), ms(w.Max),
			steps[fmt.Sprintf("%.0f/first", at)], steps[fmt.Sprintf("%.0f/second", at)], h.BrokerCPU, h.DirtyMiB)
	}
	return string(b)
}

func steadyText(s float64) string {
	if s < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f s", s)
}

// boundText is a histogram bound in milliseconds.
func boundText(seconds float64) string {
	if math.IsInf(seconds, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(seconds*1000, 'f', -1, 64) + " ms"
}

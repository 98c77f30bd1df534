package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/loadgen"
	"github.com/cimstream/cimstream/pkg/cim"
)

// loadgenCommand produces realistic CIM traffic and, with --measure, reports end-to-end latency.
func loadgenCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cimstream loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	direction := fs.String("direction", "inbound", "inbound (to connector topics) or outbound (to the CCM's topic)")
	topicList := fs.String("topics", "cim.inbound.web,cim.inbound.whatsapp", "topics to produce to, comma-separated")
	customers := fs.Int("customers", 1000, "number of customers")
	rate := fs.Float64("rate", 0, "messages per second (0: as fast as possible)")
	count := fs.Int("count", 0, "messages to send (0: no limit)")
	duration := fs.Duration("duration", 0, "how long to send (0: no limit)")
	size := fs.Int("size", 1024, "approximate message size in bytes")
	keyed := fs.Bool("keyed", true, "key records by customer")
	invalid := fs.Float64("invalid", 0, "share of invalid messages, 0..1")
	measure := fs.String("measure", "", "output topic to read: report end-to-end latency by matching message ids")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dir, ok := cim.ParseDirection(*direction)
	if !ok || (*count == 0 && *duration == 0) || *invalid < 0 || *invalid > 1 {
		fmt.Fprintln(stderr, "cimstream loadgen: need --direction inbound|outbound, --count or --duration, and --invalid within 0..1")
		return 2
	}
	cfg, err := loadConfig("loadgen", []string{"--brokers", *brokers}, stderr)
	if err != nil {
		return usageOrFail(err, func(err error) int { fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err)); return 1 })
	}
	factory, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if _, err := factory.Ping(ctx); err != nil {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	opts := loadgen.Options{Direction: dir, Topics: strings.Split(*topicList, ","), Customers: *customers, Rate: *rate,
		Count: *count, Duration: *duration, Size: *size, Keyed: *keyed, Invalid: *invalid,
		RunID: fmt.Sprintf("lg%x", time.Now().UnixNano()&0xffffffff)}
	p := loadgen.NewProducer(factory, opts, *measure != "")
	defer p.Close()

	start := time.Now()
	progressDone := make(chan struct{})
	go progress(ctx, stderr, p, start, progressDone)
	var lat loadgen.Latencies
	measured := make(chan error, 1)
	if *measure != "" {
		want := *count
		if want == 0 {
			want = int(*rate * duration.Seconds())
		}
		mctx, cancel := context.WithTimeout(ctx, *duration+time.Duration(want/1000+30)*time.Second)
		defer cancel()
		go func() {
			var err error
			lat, err = p.Measure(mctx, factory, *measure, want)
			measured <- err
		}()
		time.Sleep(500 * time.Millisecond) // readers positioned at the end before the first send
	}
	stats, err := p.Run(ctx)
	close(progressDone)
	if err != nil {
		fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
		return 1
	}
	if *measure != "" {
		if err := <-measured; err != nil {
			fmt.Fprintf(stderr, "cimstream: %s\n", oneLine(err))
			return 1
		}
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"sent": stats.Sent, "errors": stats.Errors, "invalid": stats.Invalid,
			"seconds": stats.Elapsed.Seconds(), "rate": stats.Rate(), "latency": lat})
	} else {
		fmt.Fprintf(stdout, "sent=%d errors=%d invalid=%d elapsed=%v rate=%.0f msg/s\n", stats.Sent, stats.Errors, stats.Invalid,
			stats.Elapsed.Round(time.Millisecond), stats.Rate())
		if *measure != "" {
			fmt.Fprintf(stdout, "end-to-end latency: %s\n", lat)
		}
	}
	if stats.Errors > 0 {
		return 1
	}
	return 0
}

// progress shows the rate while sending: a line rewritten in place on a terminal, a line every 5 s otherwise.
func progress(ctx context.Context, w io.Writer, p *loadgen.Producer, start time.Time, done <-chan struct{}) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	every := 5 * time.Second
	if tty {
		every = 500 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-t.C:
			s := p.Stats(start)
			line := fmt.Sprintf("sent=%d rate=%.0f msg/s errors=%d", s.Sent, float64(s.Sent-last)/every.Seconds(), s.Errors)
			last = s.Sent
			if tty {
				fmt.Fprintf(w, "\r%-60s", line)
			} else {
				fmt.Fprintln(w, line)
			}
		}
	}
}

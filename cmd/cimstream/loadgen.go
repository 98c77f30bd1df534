package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/loadgen"
	"github.com/cimstream/cimstream/pkg/cim"
)

// loadgenOptions are loadgen's own flags.
type loadgenOptions struct {
	direction, topics, measure string
	customers, count, size     int
	rate, invalid              float64
	duration                   time.Duration
	keyed, asJSON              bool
}

func newLoadgenCommand() *cobra.Command {
	var o loadgenOptions
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Produce realistic CIM traffic and measure end-to-end latency",
		Long: `Produce realistic CIM traffic (a mix of body types, customers over channel topics, a rate or as fast as
possible, a count or a duration, keyed or not, an invalid share). With --measure OUTPUT-TOPIC it reads the
output topic and reports end-to-end latency by matching message ids. It connects as the service does
(kafka.brokers, kafka.tls, kafka.sasl from --config, the environment or --set), so it works against a
secured cluster.`,
		Example: `  cimstream loadgen --brokers 127.0.0.1:9092 --topics cim.inbound.web --rate 1000 --duration 30s --measure ccm.inbound
  cimstream loadgen --config cimstream.yaml --count 10000 --invalid 0.05 --json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return loadgenRun(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.direction, "direction", "inbound", "inbound (to connector topics) or outbound (to the CCM's topic)")
	f.StringVar(&o.topics, "topics", strings.Join(config.Default().Topics.InboundChannels, ","), "topics to produce to, comma-separated")
	f.IntVar(&o.customers, "customers", 1000, "number of customers")
	f.Float64Var(&o.rate, "rate", 0, "messages per second (0: as fast as possible)")
	f.IntVar(&o.count, "count", 0, "messages to send (0: no limit)")
	f.DurationVar(&o.duration, "duration", 0, "how long to send (0: no limit)")
	f.IntVar(&o.size, "size", 1024, "approximate message size in bytes")
	f.BoolVar(&o.keyed, "keyed", true, "key records by customer")
	f.Float64Var(&o.invalid, "invalid", 0, "share of invalid messages, 0..1")
	f.StringVar(&o.measure, "measure", "", "output `topic` to read: report end-to-end latency by matching message ids")
	f.BoolVar(&o.asJSON, "json", false, "print the summary as JSON")
	_ = cmd.RegisterFlagCompletionFunc("direction", fixedCompletion("inbound", "outbound"))
	return cmd
}

// loadgenRun produces the traffic and prints the summary.
func loadgenRun(cmd *cobra.Command, o loadgenOptions) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	dir, ok := cim.ParseDirection(o.direction)
	if !ok || (o.count == 0 && o.duration == 0) || o.invalid < 0 || o.invalid > 1 {
		return usagef("need --direction inbound|outbound, --count or --duration, and --invalid within 0..1")
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	factory, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	opts := loadgen.Options{Direction: dir, Topics: strings.Split(o.topics, ","), Customers: o.customers, Rate: o.rate,
		Count: o.count, Duration: o.duration, Size: o.size, Keyed: o.keyed, Invalid: o.invalid,
		RunID: fmt.Sprintf("lg%x", time.Now().UnixNano()&0xffffffff)}
	p := loadgen.NewProducer(factory, opts, o.measure != "")
	defer p.Close()

	start := time.Now()
	progressDone := make(chan struct{})
	go progress(ctx, stderr, p, start, progressDone)
	var lat loadgen.Latencies
	measured := make(chan error, 1)
	if o.measure != "" {
		want := cmp.Or(o.count, int(o.rate*o.duration.Seconds()))
		mctx, cancel := context.WithTimeout(ctx, o.duration+time.Duration(want/1000+30)*time.Second)
		defer cancel()
		go func() {
			var err error
			lat, err = p.Measure(mctx, factory, o.measure, want)
			measured <- err
		}()
		time.Sleep(500 * time.Millisecond) // readers positioned at the end before the first send
	}
	stats := p.Run(ctx)
	close(progressDone)
	if o.measure != "" {
		if err := <-measured; err != nil {
			return err
		}
	}
	if o.asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"sent": stats.Sent, "errors": stats.Errors, "invalid": stats.Invalid,
			"seconds": stats.Elapsed.Seconds(), "rate": stats.Rate(), "requested_rate": o.rate, "latency": lat})
	} else {
		requested := "as fast as acknowledged"
		if o.rate > 0 {
			requested = fmt.Sprintf("%.0f msg/s", o.rate)
		}
		fmt.Fprintf(stdout, "sent=%d errors=%d invalid=%d elapsed=%v rate=%.0f msg/s (requested: %s)\n", stats.Sent, stats.Errors, stats.Invalid,
			stats.Elapsed.Round(time.Millisecond), stats.Rate(), requested)
		if o.measure != "" {
			fmt.Fprintf(stdout, "end-to-end latency: %s\n", lat)
		}
	}
	if stats.Errors > 0 {
		return silentExit(1)
	}
	return nil
}

// progress shows the rate while sending: a line rewritten in place on a terminal, a line every 5 s otherwise.
func progress(ctx context.Context, w io.Writer, p *loadgen.Producer, start time.Time, done <-chan struct{}) {
	tty := isTerminal(w)
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

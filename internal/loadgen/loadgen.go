// Package loadgen produces realistic CIM traffic for load tests and benchmarks, and measures end-to-end
// latency by matching message ids on an output topic.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Options describe the traffic.
type Options struct {
	Direction cim.Direction
	Topics    []string // inbound: channel topics, one chosen per customer; outbound: the CCM's topic
	Customers int
	Rate      float64       // messages per second; 0 = as fast as the broker takes them
	Count     int           // stop after this many (0 = no limit)
	Duration  time.Duration // stop after this long (0 = no limit)
	Size      int           // approximate message size in bytes
	Keyed     bool          // key records by customer, as most connectors do
	Invalid   float64       // share of invalid records (0..1)
	RunID     string        // prefix of message ids, so runs do not collide
	// ServiceIdentifiers cycles the serviceIdentifier of messages (outbound routing); default "web".
	ServiceIdentifiers []string
}

// Stats are the producer's counts.
type Stats struct {
	Sent    int64
	Errors  int64
	Invalid int64
	Elapsed time.Duration
}

// Rate is messages per second over the elapsed time.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// Generator builds message i deterministically from the options.
type Generator struct {
	opts Options
	pad  string
}

// NewGenerator returns a generator; Size below the natural size of a message adds no padding.
func NewGenerator(opts Options) *Generator {
	if opts.Customers <= 0 {
		opts.Customers = 1000
	}
	if len(opts.ServiceIdentifiers) == 0 {
		opts.ServiceIdentifiers = []string{"web"}
	}
	return &Generator{opts: opts, pad: strings.Repeat("lorem ipsum ", opts.Size/12+1)[:max(0, opts.Size)]}
}

// ID is the message id of message i.
func (g *Generator) ID(i int) string { return g.opts.RunID + "-" + strconv.Itoa(i) }

// Message returns the topic, key and value of message i, and whether it is invalid on purpose.
func (g *Generator) Message(i int) (topic string, key, value []byte, invalid bool) {
	rng := rand.New(rand.NewPCG(uint64(i), 0x9e3779b97f4a7c15))
	customer := rng.IntN(g.opts.Customers)
	topic = g.opts.Topics[customer%len(g.opts.Topics)]
	cust := "cust-" + strconv.Itoa(customer)
	if g.opts.Keyed {
		key = []byte(cust)
	}
	if g.opts.Invalid > 0 && rng.Float64() < g.opts.Invalid {
		return topic, key, []byte(`{"id":"` + g.ID(i) + `","header":{"sender":{"id":"x"}},"body":{"type":"PLAIN"}}`), true
	}
	kind := rng.IntN(20)
	value = g.build(i, customer, cust, kind, "")
	if pad := g.opts.Size - len(value); pad > 0 {
		value = g.build(i, customer, cust, kind, g.pad[:pad])
	}
	return topic, key, value, false
}

// build writes message i; pad is added to the body's text so the message reaches Options.Size.
func (g *Generator) build(i, customer int, cust string, kind int, pad string) []byte {
	sid := g.opts.ServiceIdentifiers[customer%len(g.opts.ServiceIdentifiers)]
	var b strings.Builder
	b.Grow(g.opts.Size + 64)
	b.WriteString(`{"id":"` + g.ID(i) + `","header":{`)
	if g.opts.Direction == cim.Outbound {
		b.WriteString(`"sender":{"id":"agent-7","type":"AGENT","senderName":"Bob"},"channelData":{"channelCustomerIdentifier":"` + cust +
			`","serviceIdentifier":"` + sid + `"},"channelSessionId":"s-` + cust + `","conversationId":"c-` + cust +
			`","customer":{"_id":"` + cust + `","firstName":"Ann"}`)
	} else {
		b.WriteString(`"sender":{"id":"connector-1","type":"CONNECTOR","senderName":"WEB_CONNECTOR"},"channelData":{"channelCustomerIdentifier":"` + cust +
			`","serviceIdentifier":"` + sid + `","requestPriority":0,"customerFirstName":"Ann","customerLastName":"Lee","additionalAttributes":[]},` +
			`"channelSessionId":null,"conversationId":null,"customer":null,"intent":null,"stamps":[],"entities":{},"roomId":null`)
	}
	b.WriteString(`,"timestamp":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `},"body":`)
	switch k := kind; {
	case k < 14:
		b.WriteString(`{"type":"PLAIN","markdownText":"Hello, I need help with my order. ` + pad + `"}`)
	case k < 16:
		b.WriteString(`{"type":"IMAGE","caption":"` + pad + `","attachment":{"mediaUrl":"https://cx.example.com/f/img-` + strconv.Itoa(i) + `.jpg","mimeType":"image/jpeg","size":20480}}`)
	case k < 18 && g.opts.Direction == cim.Outbound:
		b.WriteString(`{"type":"BUTTON","markdownText":"` + pad + `","buttonMessageType":"QUICK_REPLIES","buttons":[{"title":"Yes","type":"postback","payload":"YES"},{"title":"No","type":"postback","payload":"NO"}]}`)
	case k < 18:
		b.WriteString(`{"type":"LOCATION","location":{"latitude":47.3769,"longitude":8.5417},"markdownText":"` + pad + `"}`)
	default:
		b.WriteString(`{"type":"CONTACT","contacts":[{"name":{"formattedName":"Ann Lee"},"phones":[{"phone":"+41791234567"}]}],"markdownText":"` + pad + `"}`)
	}
	b.WriteString(`}`)
	return []byte(b.String())
}

// Producer sends generated traffic.
type Producer struct {
	opts   Options
	gen    *Generator
	writer *kafka.Writer
	sent   atomic.Int64
	errs   atomic.Int64
	inval  atomic.Int64
	// SentAt records when each message id was handed to the writer, for latency matching.
	mu     sync.Mutex
	sentAt map[string]time.Time
	track  bool
}

// NewProducer returns a producer on the project's writer settings; track keeps send times for Measure.
func NewProducer(factory *kafkaclient.Factory, opts Options, track bool) *Producer {
	p := &Producer{opts: opts, gen: NewGenerator(opts), writer: factory.Writer(""), track: track}
	if track {
		p.sentAt = map[string]time.Time{}
	}
	return p
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.writer.Close() }

// Stats returns the counts so far.
func (p *Producer) Stats(start time.Time) Stats {
	return Stats{Sent: p.sent.Load(), Errors: p.errs.Load(), Invalid: p.inval.Load(), Elapsed: time.Since(start)}
}

// Run sends until Count, Duration or ctx ends. With a rate, every tick sends what is due by the time
// elapsed since the start (a slow acknowledgement is made up at the next tick, so the achieved rate holds
// the requested one); without, batches of 1,000 go as fast as acknowledgements come back.
func (p *Producer) Run(ctx context.Context) Stats {
	start := time.Now()
	if p.opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.Duration)
		defer cancel()
	}
	const maxBatch = 1000
	var ticker *time.Ticker
	if p.opts.Rate > 0 {
		ticker = time.NewTicker(time.Millisecond)
		defer ticker.Stop()
	}
	msgs := make([]kafka.Message, 0, maxBatch)
	for i := 0; ; {
		if p.opts.Count > 0 && i >= p.opts.Count {
			break
		}
		n := maxBatch
		if ticker != nil {
			select {
			case <-ctx.Done():
				return p.Stats(start)
			case <-ticker.C:
			}
			n = min(maxBatch, int(p.opts.Rate*time.Since(start).Seconds())-i)
			if n <= 0 {
				continue
			}
		} else if ctx.Err() != nil {
			break
		}
		if p.opts.Count > 0 {
			n = min(n, p.opts.Count-i)
		}
		msgs = msgs[:0]
		now := time.Now()
		for j := 0; j < n; j++ {
			topic, key, value, invalid := p.gen.Message(i + j)
			msgs = append(msgs, kafka.Message{Topic: topic, Key: key, Value: value})
			if invalid {
				p.inval.Add(1)
			}
			if p.track {
				p.mu.Lock()
				p.sentAt[p.gen.ID(i+j)] = now
				p.mu.Unlock()
			}
		}
		failed := 0
		if err := p.writer.WriteMessages(context.WithoutCancel(ctx), msgs...); err != nil {
			failed = n
			var werrs kafka.WriteErrors
			if errors.As(err, &werrs) {
				failed = werrs.Count()
			}
		}
		p.errs.Add(int64(failed))
		p.sent.Add(int64(n - failed))
		i += n
	}
	return p.Stats(start)
}

// Latencies are end-to-end latency figures.
type Latencies struct {
	Matched int           `json:"matched"`
	P50     time.Duration `json:"p50"`
	P99     time.Duration `json:"p99"`
	P999    time.Duration `json:"p999"`
	Max     time.Duration `json:"max"`
}

func (l Latencies) String() string {
	return fmt.Sprintf("matched=%d p50=%v p99=%v p999=%v max=%v", l.Matched, l.P50.Round(10*time.Microsecond),
		l.P99.Round(10*time.Microsecond), l.P999.Round(10*time.Microsecond), l.Max.Round(10*time.Microsecond))
}

// Measure reads every partition of the output topic from its current end while the producer runs, and
// matches output ids with send times. It returns when want records matched or ctx ends.
func (p *Producer) Measure(ctx context.Context, factory *kafkaclient.Factory, topic string, want int) (Latencies, error) {
	samples, err := p.MeasureSamples(ctx, factory, topic, want)
	return Summarize(samples), err
}

// Summarize gives the latency figures of samples.
func Summarize(samples []Sample) Latencies {
	lat := make([]time.Duration, len(samples))
	for i, s := range samples {
		lat[i] = s.Latency
	}
	return summarize(lat)
}

// Sample is one matched message: when it was sent and how long it took to arrive.
type Sample struct {
	Sent    time.Time
	Latency time.Duration
}

// MeasureSamples is Measure keeping every matched message, for latency over time (Windows).
func (p *Producer) MeasureSamples(ctx context.Context, factory *kafkaclient.Factory, topic string, want int) ([]Sample, error) {
	client := factory.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) == 0 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("output topic %s: %v", topic, err)
	}
	var mu sync.Mutex
	var samples []Sample
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, part := range md.Topics[0].Partitions {
		r, err := factory.PartitionReader(topic, part.ID, kafka.LastOffset)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					return
				}
				arrived := time.Now()
				msg, err := cim.Decode(m.Value)
				if err != nil {
					continue
				}
				p.mu.Lock()
				sent, ok := p.sentAt[msg.ID()]
				p.mu.Unlock()
				if !ok {
					continue
				}
				mu.Lock()
				samples = append(samples, Sample{Sent: sent, Latency: arrived.Sub(sent)})
				done := len(samples) >= want
				mu.Unlock()
				if done {
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	return samples, nil
}

// Window is the latency of the messages sent in one interval.
type Window struct {
	From    time.Duration `json:"from"` // the interval's start, from the origin
	Matched int           `json:"matched"`
	P50     time.Duration `json:"p50"`
	P99     time.Duration `json:"p99"`
	Max     time.Duration `json:"max"`
}

// Windows groups samples by send time into consecutive intervals of width from origin (samples sent
// before origin are left out) and summarizes each; an interval without samples has Matched 0.
func Windows(samples []Sample, origin time.Time, width time.Duration) []Window {
	if width <= 0 {
		return nil
	}
	var byWindow [][]time.Duration
	for _, s := range samples {
		at := s.Sent.Sub(origin)
		if at < 0 {
			continue
		}
		i := int(at / width)
		for len(byWindow) <= i {
			byWindow = append(byWindow, nil)
		}
		byWindow[i] = append(byWindow[i], s.Latency)
	}
	out := make([]Window, len(byWindow))
	for i, lat := range byWindow {
		l := summarize(lat)
		out[i] = Window{From: time.Duration(i) * width, Matched: l.Matched, P50: l.P50, P99: l.P99, Max: l.Max}
	}
	return out
}

// SteadyFrom returns the start of the first window from which every window in ws with samples has a
// p99 at most limit, and false when the last window with samples is above it.
func SteadyFrom(ws []Window, limit time.Duration) (time.Duration, bool) {
	var width time.Duration // the interval of ws (the second window's start)
	if len(ws) >= 2 {
		width = ws[1].From - ws[0].From
	}
	from, ok := time.Duration(0), len(ws) > 0
	for _, w := range ws {
		if w.Matched > 0 && w.P99 > limit {
			from, ok = w.From+width, false
		} else if w.Matched > 0 {
			ok = true
		}
	}
	return from, ok
}

func summarize(lat []time.Duration) Latencies {
	if len(lat) == 0 {
		return Latencies{}
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	return Latencies{Matched: len(lat), P50: at(0.5), P99: at(0.99), P999: at(0.999), Max: lat[len(lat)-1]}
}

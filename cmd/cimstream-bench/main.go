// Command cimstream-bench runs the end-to-end benchmarks of `make bench` against a real Kafka broker
// (KAFKA_BROKERS) and writes bench/results.json and the results table in docs/benchmarks.md. Every figure
// comes with a baseline measured in the same run: a plain consume → produce copier with the same client
// settings, and Kafka's own ProducerPerformance on the same broker.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/loadgen"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// Results is bench/results.json.
type Results struct {
	Date     string                   `json:"date"`
	Machine  string                   `json:"machine"`
	Go       string                   `json:"go"`
	Kafka    string                   `json:"kafka"`
	Messages int                      `json:"messages"`
	Size     int                      `json:"message_bytes"`
	Micro    []Micro                  `json:"micro"`
	Figures  map[string]Figure        `json:"figures"`
	Latency  map[string]LatencyFigure `json:"latency"`
	Ingress  []IngressFigure          `json:"ingress"`
	Restore  []RestoreFigure          `json:"restore"`
	// VsProducerPerformance is each throughput figure's rate over ProducerPerformance's in the same run.
	VsProducerPerformance map[string]float64 `json:"vs_producer_performance,omitempty"`
	// Startup is latency in 1 s windows from the process start, and while a second instance joins.
	Startup  *StartupFigure `json:"startup,omitempty"`
	Commands []string       `json:"commands"`
	// EgressDate is when the egress figures were measured (a BENCH_ONLY=egress run keeps the others).
	EgressDate string `json:"egress_date,omitempty"`
}

// Micro is one Go benchmark line.
type Micro struct {
	Name     string  `json:"name"`
	NsOp     float64 `json:"ns_per_op"`
	BytesOp  float64 `json:"bytes_per_op"`
	AllocsOp float64 `json:"allocs_per_op"`
}

// Figure is one throughput measurement.
type Figure struct {
	Records   int     `json:"records"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	MaxRSSMiB float64 `json:"max_rss_mib,omitempty"`
	// Requests per 1,000 records, from the instance's cimstream_kafka_requests_total (end of run less start).
	ProducePer1k float64 `json:"produce_requests_per_1k,omitempty"`
	FetchPer1k   float64 `json:"fetch_requests_per_1k,omitempty"`
	// CPU seconds per 100,000 records: the instance's (cimstream) and the broker's over the same run.
	CPUPer100k       float64 `json:"cpu_seconds_per_100k,omitempty"`
	BrokerCPUPer100k float64 `json:"broker_cpu_seconds_per_100k,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cimstream-bench:", err)
		os.Exit(1)
	}
}

var (
	root     = must(os.Getwd())
	messages = envInt("BENCH_MESSAGES", 200000)
	// egressMessages is smaller: every one is an HTTP round trip, and the baseline loop does them one by one.
	egressMessages = envInt("BENCH_EGRESS_MESSAGES", 50000)
	egressDelay    = 5 * time.Millisecond
	size           = 1024
	log            = zap.NewNop()
	// broker is the local broker's process (its CPU time is read around each run); 0 when not found.
	broker int
)

func run() error {
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		return fmt.Errorf("KAFKA_BROKERS is not set (make bench starts a broker)")
	}
	broker = brokerPid(brokers)
	if os.Getenv("BENCH_ONLY") == "egress" {
		return egressOnly(brokers)
	}
	res := Results{Date: time.Now().UTC().Format("2006-01-02"), Machine: machine(), Go: runtime.Version(), Kafka: "Apache Kafka 4.3.1 (KRaft, single node, same machine)",
		Messages: messages, Size: size, Figures: map[string]Figure{}, Latency: map[string]LatencyFigure{}}
	step := func(name string) { fmt.Fprintf(os.Stderr, "bench: %s\n", name) }
	if os.Getenv("BENCH_ONLY") == "ingress" {
		// The ingress figure alone, printed and not written to the docs (the other figures would be lost).
		base := baseConfig(brokers)
		figs, err := ingressFigures(must(kafkaclient.New(base.Kafka)), base, fmt.Sprintf("bench.%x.", time.Now().Unix()))
		if err != nil {
			return err
		}
		fmt.Print(ingressTable(figs))
		return nil
	}

	if os.Getenv("BENCH_ONLY") == "startup" {
		// Latency from the process start and over a join, printed, docs untouched.
		s, err := startupStep(must(kafkaclient.New(baseConfig(brokers).Kafka)), baseConfig(brokers), fmt.Sprintf("bench.%x.", time.Now().Unix()))
		if err != nil {
			return err
		}
		fmt.Print(startupTable(&s))
		return nil
	}

	// BENCH_ONLY=inbound: the inbound figures (keyed, unkeyed, restore, latency), printed, docs untouched.
	inboundOnly := os.Getenv("BENCH_ONLY") == "inbound"
	if !inboundOnly {
		step("Go micro-benchmarks")
		micro, cmd, err := microBenchmarks()
		if err != nil {
			return err
		}
		res.Micro, res.Commands = micro, append(res.Commands, cmd)
	}

	base := baseConfig(brokers)
	factory := must(kafkaclient.New(base.Kafka))
	prefix := fmt.Sprintf("bench.%x.", time.Now().Unix())

	// The same preloaded input for cimstream and the copier, twice: keyed by customer with kafka-go's
	// Murmur2 (each record on its customer's home partition, as connectors keying by
	// channelCustomerIdentifier write it: the fast path), and unkeyed (spread round robin: a sixth of the
	// records is home, the rest goes through the repartition topic).
	var in config.Config
	for _, keyed := range []bool{true, false} {
		name := map[bool]string{true: "keyed", false: "unkeyed"}[keyed]
		cfg := base
		setTopics(&cfg, prefix+name+".")
		cfg.Outbound.Enabled = false
		channels := []string{prefix + name + ".cim.inbound.web", prefix + name + ".cim.inbound.whatsapp"}
		cfg.Topics.InboundChannels = channels
		cfg.Topics.InboundPattern = config.InboundPattern(prefix + name + ".")
		if err := createTopics(factory, cfg, prefix+name+".copy"); err != nil {
			return err
		}
		step(fmt.Sprintf("preload %d %s messages of %d bytes over %d channel topics", messages, name, size, len(channels)))
		pre, err := produce(factory, loadgen.Options{Direction: cim.Inbound, Topics: channels, Customers: 5000, Count: messages, Size: size, Keyed: keyed, RunID: "pre-" + name})
		if err != nil {
			return err
		}
		res.Figures[figPreload+", "+name] = pre

		step("baseline copier: consume → produce, same client settings, no processing (" + name + " input)")
		copier, err := copyAll(factory, cfg, channels, prefix+name+".copy")
		if err != nil {
			return err
		}
		res.Figures[figCopier+", "+name+" input"] = copier

		step("inbound: cimstream consumes the preloaded topics until all are on the CCM topic (" + name + ")")
		inbound, err := runCimstream(cfg, cfg.Topics.CCMInbound, messages)
		if err != nil {
			return err
		}
		res.Figures[figInbound+", "+name] = inbound
		if keyed {
			in = cfg
		}
	}

	step("rebalance restore: one instance restores the keyed run's sessions, a second joins")
	restore, err := restoreBench(in)
	if err != nil {
		return err
	}
	res.Restore = restore

	step("broker ceiling: Kafka's ProducerPerformance, then ConsumerPerformance on what it wrote")
	ceiling, consumer, cmds, err := ceilings(factory, brokers, prefix+"ceiling")
	if err != nil {
		return err
	}
	res.Figures[figCeiling], res.Figures[figConsumerCeiling] = ceiling, consumer
	res.Commands = append(res.Commands, cmds...)

	step("latency at fixed rates")
	took, dirty := quiesce(30 * time.Second)
	fmt.Fprintf(os.Stderr, "bench: waited %v for the page cache (%.0f MiB dirty) and the broker to settle\n", took.Round(time.Millisecond), dirty)
	lat := base
	setTopics(&lat, prefix+"lat.")
	lat.Outbound.Enabled = false
	lat.Topics.InboundChannels = []string{prefix + "lat.cim.inbound.web"}
	lat.Topics.InboundPattern = config.InboundPattern(prefix + "lat.")
	if err := createTopics(factory, lat); err != nil {
		return err
	}
	for _, r := range []struct {
		rate float64
		d    time.Duration
	}{{1000, 20 * time.Second}, {5000, 10 * time.Second}} {
		l, err := latency(factory, lat, r.rate, r.d)
		if err != nil {
			return err
		}
		res.Latency[fmt.Sprintf("%.0f msg/s", r.rate)] = l
	}
	quiesce(30 * time.Second)
	st, err := startupStep(factory, base, prefix)
	if err != nil {
		return err
	}
	res.Startup = &st
	if inboundOnly {
		fmt.Print(table(res))
		return nil
	}

	step("outbound: fan-out to 2 topics plus a notification per message")
	out := base
	setTopics(&out, prefix+"out.")
	out.Inbound.Enabled = false
	out.Outbound.Channels = map[string]string{"web": prefix + "out.web"}
	out.Outbound.Routes = []config.Route{{Name: "archive", Destinations: []string{prefix + "out.archive"}, Continue: true}}
	if err := createTopics(factory, out); err != nil {
		return err
	}
	outN := messages / 2
	if _, err := produce(factory, loadgen.Options{Direction: cim.Outbound, Topics: []string{out.Topics.CCMOutbound}, Customers: 5000, Count: outN, Size: size, Keyed: true, RunID: "out"}); err != nil {
		return err
	}
	outbound, err := runCimstream(out, out.Topics.Notifications, outN)
	if err != nil {
		return err
	}
	res.Figures[figOutbound] = outbound

	if res.Ingress, err = ingressFigures(factory, base, prefix); err != nil {
		return err
	}

	step(fmt.Sprintf("egress: %d webhook deliveries to a local connector answering 202, and a sequential POST loop", egressMessages))
	if err := addEgress(&res, base, factory, prefix); err != nil {
		return err
	}

	res.Commands = append(res.Commands, "make bench   # scripts/bench.sh: starts Apache Kafka on 127.0.0.1:19392, runs cmd/cimstream-bench")
	return write(res)
}

func baseConfig(brokers string) config.Config {
	cfg := config.Default()
	cfg.Kafka.Brokers = strings.Split(brokers, ",")
	cfg.Topics.Partitions = 6
	cfg.Inbound.TopicRefreshInterval = time.Second
	cfg.Log.Level = "warn"
	return cfg
}

func setTopics(cfg *config.Config, prefix string) {
	t := &cfg.Topics
	t.CCMInbound, t.CCMOutbound, t.Notifications = prefix+"ccm.inbound", prefix+"ccm.outbound", prefix+"cim.notifications"
	t.DeadLetter, t.Sessions, t.Repartition = prefix+"cimstream.dlq", prefix+"cimstream.sessions", prefix+"cimstream.inbound.repartition"
	// Session events are on (as by default) but on a topic of their own, so the CCM topic's record count
	// is the message count the scenario waits for.
	t.SessionEvents = prefix + "ccm.session-events"
	cfg.Kafka.Consumer.GroupID = prefix + "group" // a fresh group per scenario: read from the beginning
}

func createTopics(f *kafkaclient.Factory, cfg config.Config, extra ...string) error {
	specs := topics.Required(cfg)
	for _, e := range extra {
		specs = append(specs, topics.Spec{Name: e, Partitions: cfg.Topics.Partitions, ReplicationFactor: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := topics.Create(ctx, f.Client(), specs); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // leaders elected
	return nil
}

func produce(f *kafkaclient.Factory, opts loadgen.Options) (Figure, error) {
	p := loadgen.NewProducer(f, opts, false)
	defer p.Close()
	s := p.Run(context.Background())
	var err error
	if s.Errors > 0 {
		err = fmt.Errorf("%d produce errors", s.Errors)
	}
	return Figure{Records: int(s.Sent), Seconds: s.Elapsed.Seconds(), PerSecond: s.Rate()}, err
}

// endOffsets sums the end offsets of a topic's partitions: the number of records written to it.
func endOffsets(f *kafkaclient.Factory, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lags, err := kafkaedge.GroupLag(ctx, f, "cimstream-bench-counter", []string{topic})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range lags {
		n += int(l.Lag)
	}
	return n, nil
}

// waitCount polls topic until it holds want records; it returns when the count was reached.
func waitCount(f *kafkaclient.Factory, topic string, want int, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		n, err := endOffsets(f, topic)
		if err == nil && n >= want {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: %d of %d records after %v", topic, n, want, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type identity struct{ to string }

func (h identity) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	for i, r := range batch {
		out[i] = stream.Emit(stream.Output{Topic: h.to, Partition: stream.ByKey, Key: r.Key, Value: r.Value, Headers: r.Headers, Time: r.Time})
	}
	return out
}

// copyAll is the baseline: the stage runtime's partition loop and commits, with no processing, over
// kafka-go's own Reader and Writer (copier.go), copying the channel topics to one topic.
func copyAll(f *kafkaclient.Factory, cfg config.Config, from []string, to string) (Figure, error) {
	w := f.Writer("")
	defer w.Close()
	r := stage.New(stage.Config{
		Name: "copier", GroupID: cfg.Kafka.Consumer.GroupID + "-copier",
		Topics:          func(context.Context) ([]string, error) { return from, nil },
		RefreshInterval: time.Minute,
		NewHandler:      func(context.Context, string, int) (stage.Handler, error) { return identity{to}, nil },
		BatchSize:       cfg.Kafka.Consumer.BatchSize, Linger: cfg.Kafka.Consumer.Linger, CommitInterval: cfg.Kafka.Consumer.CommitInterval,
	}, copierBroker{Broker: kafkaedge.NewBroker(f, nil), cfg: cfg.Kafka, f: f}, kafkaSink{w: w}, log)
	ctx, cancel := context.WithCancel(context.Background())
	brokerBefore := cpuSeconds(broker)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	end, err := waitCount(f, to, messages, 10*time.Minute)
	brokerCPU := cpuSeconds(broker) - brokerBefore
	cancel()
	<-done
	if err != nil {
		return Figure{}, err
	}
	s := end.Sub(start).Seconds()
	return Figure{Records: messages, Seconds: s, PerSecond: float64(messages) / s, BrokerCPUPer100k: perRecords(brokerCPU, messages, 1e5)}, nil
}

// runCimstream starts the binary on cfg and times it until topic holds want records, sampling its memory
// and reading, from the start to the end of the run, its Kafka requests and its and the broker's CPU time.
func runCimstream(cfg config.Config, topic string, want int) (Figure, error) {
	f := must(kafkaclient.New(cfg.Kafka))
	addr, err := freeAddr()
	if err != nil {
		return Figure{}, err
	}
	brokerBefore := cpuSeconds(broker)
	start := time.Now()
	pid, stop, err := startCimstream(cfg, addr, os.Stderr)
	if err != nil {
		return Figure{}, err
	}
	defer stop()
	stopRSS := sampleMaxRSS(pid)
	before, err := kafkaRequests(addr, 30*time.Second)
	if err != nil {
		return Figure{}, fmt.Errorf("requests at the start: %w", err)
	}
	end, err := waitCount(f, topic, want, 10*time.Minute)
	maxRSS := stopRSS()
	if err != nil {
		return Figure{}, err
	}
	after, err := kafkaRequests(addr, 10*time.Second)
	if err != nil {
		return Figure{}, fmt.Errorf("requests at the end: %w", err)
	}
	cpu, brokerCPU := cpuSeconds(pid), cpuSeconds(broker)-brokerBefore
	s := end.Sub(start).Seconds()
	return Figure{Records: want, Seconds: s, PerSecond: float64(want) / s, MaxRSSMiB: maxRSS,
		ProducePer1k: perRecords(after["Produce"]-before["Produce"], want, 1e3), FetchPer1k: perRecords(after["Fetch"]-before["Fetch"], want, 1e3),
		CPUPer100k: perRecords(cpu, want, 1e5), BrokerCPUPer100k: perRecords(brokerCPU, want, 1e5)}, nil
}

// sampleMaxRSS samples the resident memory of process pid every 100 ms until the returned function is
// called; that function returns the highest sample (MiB).
func sampleMaxRSS(pid int) func() float64 {
	stop, done := make(chan struct{}), make(chan float64)
	go func() {
		maxRSS := 0.0
		for {
			select {
			case <-stop:
				done <- maxRSS
				return
			case <-time.After(100 * time.Millisecond):
				maxRSS = max(maxRSS, rssMiB(pid))
			}
		}
	}()
	return func() float64 { close(stop); return <-done }
}

// startCimstream starts the built binary on cfg, written to a temporary file, its admin server on
// adminAddr and its log on stderr. stop interrupts it, waits for it to exit and removes the file.
func startCimstream(cfg config.Config, adminAddr string, stderr io.Writer) (pid int, stop func(), err error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("cimstream-bench-%d.yaml", time.Now().UnixNano()))
	text, _ := cfg.YAML()
	if err := os.WriteFile(path, text, 0o600); err != nil {
		return 0, nil, err
	}
	bin := cmp.Or(os.Getenv("BENCH_BINARY"), filepath.Join(root, "bin", "cimstream")) // another build to compare
	cmd := exec.Command(bin, "run", "--config", path, "--set", "admin.address="+adminAddr)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		_ = os.Remove(path)
		return 0, nil, err
	}
	return cmd.Process.Pid, func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = os.Remove(path)
	}, nil
}

// addEgress measures the webhook egress and its baseline into res.
func addEgress(res *Results, base config.Config, factory *kafkaclient.Factory, prefix string) error {
	seq, eg, err := egressBench(base, factory, prefix+"fast.", egressMessages, 0)
	if err != nil {
		return err
	}
	res.Figures[figSequential], res.Figures[figEgress] = seq, eg
	// A connector that takes 5 ms per message: what the parallelism across customers is for.
	seq, eg, err = egressBench(base, factory, prefix+"slow.", egressMessages/25, egressDelay)
	if err != nil {
		return err
	}
	res.Figures[figSequentialSlow], res.Figures[figEgressSlow] = seq, eg
	res.EgressDate = time.Now().UTC().Format("2006-01-02")
	return nil
}

// egressOnly (BENCH_ONLY=egress) measures the egress alone and keeps the other figures of bench/results.json.
func egressOnly(brokers string) error {
	var res Results
	data, err := os.ReadFile(filepath.Join(root, "bench", "results.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return err
	}
	base := baseConfig(brokers)
	factory := must(kafkaclient.New(base.Kafka))
	fmt.Fprintf(os.Stderr, "bench: egress only, %d webhook deliveries\n", egressMessages)
	if err := addEgress(&res, base, factory, fmt.Sprintf("bench.%x.", time.Now().Unix())); err != nil {
		return err
	}
	cmd := "BENCH_ONLY=egress scripts/bench.sh   # only the egress figures, the others kept"
	if !slices.Contains(res.Commands, cmd) {
		res.Commands = append(res.Commands, cmd)
	}
	return write(res)
}

// LatencyFigure is end-to-end latency at a requested rate, with the rate loadgen achieved.
type LatencyFigure struct {
	loadgen.Latencies
	Requested float64 `json:"requested_per_second"`
	Achieved  float64 `json:"achieved_per_second"`
	// BrokerCPU is the broker's CPU use over the measurement (cores); DirtyMiB the dirty and writeback page
	// cache at its start: work left by the scenarios before it.
	BrokerCPU float64 `json:"broker_cpu_cores,omitempty"`
	DirtyMiB  float64 `json:"dirty_mib,omitempty"`
}

func latency(f *kafkaclient.Factory, cfg config.Config, rate float64, d time.Duration) (LatencyFigure, error) {
	_, stop, err := startCimstream(cfg, "127.0.0.1:0", os.Stderr)
	if err != nil {
		return LatencyFigure{}, err
	}
	defer stop()
	time.Sleep(5 * time.Second) // joined and restored
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	p, samples := measuredLoad(ctx, f, cfg, rate, d, fmt.Sprintf("lat%.0f", rate), int(rate*d.Seconds()*0.95))
	defer p.Close()
	dirty, brokerBefore, began := dirtyMiB(), cpuSeconds(broker), time.Now()
	stats := p.Run(ctx)
	brokerCPU := (cpuSeconds(broker) - brokerBefore) / time.Since(began).Seconds()
	return LatencyFigure{Latencies: loadgen.Summarize(<-samples), Requested: rate, Achieved: stats.Rate(), BrokerCPU: brokerCPU, DirtyMiB: dirty}, nil
}

// measuredLoad is a producer of keyed inbound traffic at rate for d to cfg's channel topics, its
// messages named for runID, and the latency samples of the first want of them on the CCM topic, read
// from its end until they arrived or ctx ended. The readers are at the end when it returns.
func measuredLoad(ctx context.Context, f *kafkaclient.Factory, cfg config.Config, rate float64, d time.Duration, runID string, want int) (*loadgen.Producer, <-chan []loadgen.Sample) {
	p := loadgen.NewProducer(f, loadgen.Options{Direction: cim.Inbound, Topics: cfg.Topics.InboundChannels, Customers: 1000, Rate: rate,
		Duration: d, Size: size, Keyed: true, RunID: runID}, true)
	samples := make(chan []loadgen.Sample, 1)
	go func() {
		s, _ := p.MeasureSamples(ctx, f, cfg.Topics.CCMInbound, want)
		samples <- s
	}()
	time.Sleep(500 * time.Millisecond) // the output readers at the topic's end
	return p, samples
}

var perfLine = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec`)

func producerPerformance(f *kafkaclient.Factory, brokers, topic string) (Figure, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := topics.Create(ctx, f.Client(), []topics.Spec{{Name: topic, Partitions: 6, ReplicationFactor: 1}}); err != nil {
		return Figure{}, "", err
	}
	args := []string{"tool", "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", strconv.Itoa(messages),
		"--record-size", strconv.Itoa(size), "--throughput", "-1", "--producer-props", "bootstrap.servers=" + brokers, "acks=all",
		"linger.ms=5", "batch.size=262144"}
	cmdline := "scripts/kafka.sh " + strings.Join(args, " ")
	start := time.Now()
	out, err := exec.Command(filepath.Join(root, "scripts", "kafka.sh"), args...).CombinedOutput()
	if err != nil {
		return Figure{}, cmdline, fmt.Errorf("ProducerPerformance: %v\n%s", err, out)
	}
	var fig Figure
	for _, line := range strings.Split(string(out), "\n") {
		if m := perfLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			r, _ := strconv.ParseFloat(m[2], 64)
			fig = Figure{Records: n, Seconds: float64(n) / r, PerSecond: r}
		}
	}
	if fig.Records == 0 {
		return fig, cmdline, fmt.Errorf("no summary in ProducerPerformance output (%v)", time.Since(start))
	}
	return fig, cmdline, nil
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ MB/s)?\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

func microBenchmarks() ([]Micro, string, error) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1", "./pkg/cim", "./internal/inbound", "./internal/ingress"}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return nil, "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var ms []Micro
	for _, line := range strings.Split(string(out), "\n") {
		if m := benchLine.FindStringSubmatch(line); m != nil {
			ns, _ := strconv.ParseFloat(m[2], 64)
			b, _ := strconv.ParseFloat(m[3], 64)
			a, _ := strconv.ParseFloat(m[4], 64)
			ms = append(ms, Micro{Name: strings.TrimSuffix(m[1], "-"+strconv.Itoa(runtime.NumCPU())), NsOp: ns, BytesOp: b, AllocsOp: a})
		}
	}
	return ms, "go " + strings.Join(args, " "), nil
}

func machine() string {
	model := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%d cores, %s, %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, "cimstream-bench:", err)
		os.Exit(1)
	}
	return v
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// startupStep is startupBench at 1,000 msg/s for 60 s (BENCH_STARTUP_SECONDS), a second instance joining
// half-way; BENCH_LOG_LEVEL sets the instances' log level (info).
func startupStep(f *kafkaclient.Factory, base config.Config, prefix string) (StartupFigure, error) {
	fmt.Fprintln(os.Stderr, "bench: latency from the process start at 1000 msg/s keyed, a second instance joining half-way")
	d := time.Duration(envInt("BENCH_STARTUP_SECONDS", 60)) * time.Second
	s, err := startupBench(f, base, prefix+"start.", 1000, d, d/2)
	for _, l := range s.Logs {
		fmt.Fprintln(os.Stderr, "bench: instance log", l)
	}
	return s, err
}

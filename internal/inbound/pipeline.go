package inbound

import (
	"cmp"
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// Readiness conditions of the inbound pipeline.
const (
	ReadyIngest   = "inbound.ingest"
	ReadySessions = "inbound.sessions"
)

// Observers gathers what the pipeline reports to; any may be nil.
type Observers struct {
	Records  Observer
	Sessions SessionObserver
	Runner   stage.Observer
	// Stats receives the Kafka clients' statistics (nil: not exported).
	Stats *kafkaedge.Stats
	// Budget bounds the bytes held, shared with the other pipelines (nil: unbounded).
	Budget *stage.Budget
	// Restored is told how long taking up a partition's sessions took, how many changelog records it
	// read, and whether the table was kept from before (caught up) or replayed from the beginning.
	Restored func(stage string, records int, took time.Duration, kept bool)
	Ready    func(condition string, err error)
}

// Pipeline runs both inbound stages.
type Pipeline struct {
	cfg     config.Config
	kafka   *kafkaclient.Factory
	log     *zap.Logger
	obs     Observers
	pattern *regexp.Regexp
	marks   *Watermarks // how far each repartition partition's input is known to have come
	kept    *keptTables // session tables of partitions given up cleanly, for a rebalance that hands them back
	homes   *homeTables // the sessions stage's session tables of the current generation
	// home is the partition of n a key hashes to (the sink's partitioner); bounds reads a partition's
	// first and end offsets. Both are the broker's, replaced in tests.
	home   func(key []byte, n int) int
	bounds func(ctx context.Context, topic string, partition int) (first, end int64, err error)
}

// NewPipeline builds the inbound pipeline from the configuration.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, obs Observers) (*Pipeline, error) {
	p := &Pipeline{cfg: cfg, kafka: factory, log: log.With(zap.String("pipeline", "inbound")), obs: obs, marks: NewWatermarks(),
		kept: newKeptTables(2 * (cfg.Kafka.Consumer.SessionTimeout + cfg.Kafka.Consumer.RebalanceTimeout)), homes: newHomeTables(),
		home: kafkaedge.HomePartition}
	p.bounds = func(ctx context.Context, topic string, partition int) (int64, int64, error) {
		return kafkaedge.Bounds(ctx, factory, topic, partition)
	}
	if cfg.Topics.InboundPattern != "" {
		re, err := regexp.Compile(cfg.Topics.InboundPattern)
		if err != nil {
			return nil, err
		}
		p.pattern = re
	}
	if p.obs.Ready == nil {
		p.obs.Ready = func(string, error) {}
	}
	if p.obs.Restored == nil {
		p.obs.Restored = func(string, int, time.Duration, bool) {}
	}
	return p, nil
}

// Name implements service.Pipeline.
func (p *Pipeline) Name() string { return "inbound" }

func (p *Pipeline) topics() Topics {
	t := p.cfg.Topics
	return Topics{Repartition: t.Repartition, CCM: t.CCMInbound, Notifications: t.Notifications}
}

// stageConfig is what both inbound stages share.
func (p *Pipeline) stageConfig(name, group string) stage.Config {
	c := p.cfg
	return stage.Config{
		Name: name, Pipeline: "inbound", GroupID: group,
		BatchSize: c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		RevokeWait:  c.Kafka.Consumer.RevokeWait,
		DeadLetters: deadletter.Builder{Topic: c.Topics.DeadLetter, MaxValueBytes: c.DeadLetters.MaxValueBytes},
		// Channel topics are written by connectors; only the repartition topic is cimstream's own.
		Entry:    func(topic string) bool { return topic != c.Topics.Repartition },
		Budget:   p.obs.Budget,
		Observer: p.obs.Runner,
		Lag:      kafkaedge.Lag(p.kafka),
	}
}

// Run runs both stages until ctx ends; each drains and commits before returning.
func (p *Pipeline) Run(ctx context.Context) error {
	c := p.cfg
	broker := kafkaedge.NewBroker(p.kafka, p.obs.Stats)
	offsets := func(ctx context.Context, group string, topics []string) ([]kafkaedge.PartitionOffsets, error) {
		return kafkaedge.GroupOffsets(ctx, p.kafka, group, topics)
	}
	ingestGroup, sessionsGroup := c.Kafka.Consumer.GroupID, c.Kafka.Consumer.GroupID+".sessions"
	ingestCfg := p.stageConfig("inbound-ingest", ingestGroup)
	ingestCfg.Topics = p.ingestTopics
	ingestCfg.RefreshInterval = c.Inbound.TopicRefreshInterval
	ingestCfg.NewHandler = func(context.Context, string, int) (stage.Handler, error) {
		return ingestHandler{p.normalizer()}, nil
	}
	ingestCfg.Ready = func(err error) { p.obs.Ready(ReadyIngest, err) }
	ingest := stage.New(ingestCfg, handoverBroker{Broker: broker, p: p, otherGroup: sessionsGroup, offsets: offsets},
		kafkaedge.NewSink(p.kafka, ingestCfg.Name, p.obs.Stats), p.log)

	sessionsCfg := p.stageConfig("inbound-sessions", sessionsGroup)
	sessionsCfg.Topics = p.sessionsTopics
	sessionsCfg.RefreshInterval = c.Inbound.TopicRefreshInterval
	sessionsCfg.NewHandler = p.newSessionsHandler
	sessionsCfg.Ready = func(err error) { p.obs.Ready(ReadySessions, err) }
	sessions := stage.New(sessionsCfg, handoverBroker{Broker: broker, p: p, otherGroup: ingestGroup, offsets: offsets, assigned: p.homes.assign},
		kafkaedge.NewSink(p.kafka, sessionsCfg.Name, p.obs.Stats), p.log)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go p.watchUpstream(watchCtx, ingestGroup, sessionsGroup)

	errc := make(chan error, 2)
	go func() { errc <- ingest.Run(ctx) }()
	go func() { errc <- sessions.Run(ctx) }()
	return errors.Join(<-errc, <-errc)
}

// channelTopics lists the topics named in the configuration or matching the pattern, sorted, and
// splits off those the fast path takes: with the repartition topic's partition count, when it is on.
func (p *Pipeline) channelTopics(ctx context.Context) (all, coPartitioned []string, partitions int, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Kafka.RequestTimeout)
	defer cancel()
	counts, err := kafkaedge.TopicPartitions(ctx, p.kafka)
	if err != nil {
		return nil, nil, 0, err
	}
	n := counts[p.cfg.Topics.Repartition]
	for name, count := range counts {
		if slices.Contains(p.cfg.Topics.Inbound, name) || (p.pattern != nil && p.pattern.MatchString(name)) {
			all = append(all, name)
			if p.cfg.Inbound.FastPath && n > 0 && count == n {
				coPartitioned = append(coPartitioned, name)
			}
		}
	}
	slices.Sort(all)
	slices.Sort(coPartitioned)
	return all, coPartitioned, n, nil
}

// connectorTopics lists every channel topic, sorted.
func (p *Pipeline) connectorTopics(ctx context.Context) ([]string, error) {
	all, _, _, err := p.channelTopics(ctx)
	return all, err
}

// ingestTopics are the channel topics stage 1 reads: those the fast path does not take.
func (p *Pipeline) ingestTopics(ctx context.Context) ([]string, error) {
	all, co, _, err := p.channelTopics(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(t string) bool { return slices.Contains(co, t) }), nil
}

// sessionsTopics are the repartition topic and the channel topics the fast path takes.
func (p *Pipeline) sessionsTopics(ctx context.Context) ([]string, error) {
	_, co, n, err := p.channelTopics(ctx)
	if err != nil {
		return nil, err
	}
	p.homes.setTopics(co, n)
	return append([]string{p.cfg.Topics.Repartition}, co...), nil
}

// watchInterval is how often the upstream watermarks are read: each reading costs a few requests per
// partition, and expiry needs seconds, not milliseconds.
const watchInterval = time.Second

// watchUpstream reads both inbound groups' offsets every watchInterval (or commit interval, if longer)
// into p.marks, the horizon of proactive expiry, with where the records held above each channel
// partition's last stable offset go (an open transaction's: read uncommitted, see heldPeeker). A reading
// that fails is skipped: the watermarks stand still, which only delays expiry.
func (p *Pipeline) watchUpstream(ctx context.Context, ingestGroup, sessionsGroup string) {
	t := time.NewTicker(max(watchInterval, p.cfg.Kafka.Consumer.CommitInterval))
	defer t.Stop()
	var topics []string
	var listed time.Time
	looker := p.normalizer()
	looker.observer = nopObserver{} // looking at held records is not processing them: nothing counted
	peek := &heldPeeker{scans: map[partitionKey]*heldScan{}, dest: p.destination(looker),
		read: func(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
			return kafkaedge.ReadHeld(ctx, p.kafka, topic, partition, from, end, fn)
		}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		at := time.Now()
		if topics == nil || at.Sub(listed) >= p.cfg.Inbound.TopicRefreshInterval {
			found, err := p.connectorTopics(ctx)
			if err != nil {
				p.log.Debug("upstream watermark: topics not listed", zap.Error(err))
				continue
			}
			topics, listed = found, at
		}
		ingest, err := kafkaedge.GroupOffsets(ctx, p.kafka, ingestGroup, topics)
		if err != nil {
			p.log.Debug("upstream watermark: ingest offsets not read", zap.Error(err))
			continue
		}
		// The sessions group reads the channel topics the fast path takes: a channel partition has come
		// as far as the further of the two groups (handoverBroker starts it there).
		sessions, err := kafkaedge.GroupOffsets(ctx, p.kafka, sessionsGroup, append(slices.Clone(topics), p.cfg.Topics.Repartition))
		if err != nil {
			p.log.Debug("upstream watermark: sessions offsets not read", zap.Error(err))
			continue
		}
		channels, repartition := furthest(ingest, sessions, p.cfg.Topics.Repartition)
		peekCtx, cancel := context.WithTimeout(ctx, max(p.cfg.Kafka.RequestTimeout, 5*time.Second))
		held := peek.held(peekCtx, channels, len(repartition))
		cancel()
		p.marks.Observe(at.UnixMilli(), channels, held, repartition)
	}
}

// furthest merges two readings of the channel partitions by the further committed offset, and splits
// the repartition topic's partitions off the sessions group's reading.
func furthest(ingest, sessions []kafkaedge.PartitionOffsets, repartitionTopic string) (channels, repartition []kafkaedge.PartitionOffsets) {
	at := make(map[partitionKey]int, len(ingest))
	channels = slices.Clone(ingest)
	for i, o := range channels {
		at[partitionKey{o.Topic, o.Partition}] = i
	}
	for _, o := range sessions {
		if o.Topic == repartitionTopic {
			repartition = append(repartition, o)
			continue
		}
		if i, ok := at[partitionKey{o.Topic, o.Partition}]; ok {
			channels[i].Committed = max(channels[i].Committed, o.Committed)
			channels[i].End = max(channels[i].End, o.End)
			channels[i].High = max(channels[i].High, o.High)
		} else {
			channels = append(channels, o)
		}
	}
	return channels, repartition
}

// newSessionsHandler builds a sessions-stage handler: of a repartition partition, or of a channel
// topic's partition the fast path takes. Partition p's handlers share p's session table, restored by
// the first of them. A channel partition whose repartition partition went to another member (the
// assignor did not co-partition them) sends every record through the repartition topic.
func (p *Pipeline) newSessionsHandler(ctx context.Context, topic string, partition int) (stage.Handler, error) {
	repartition := topic == p.cfg.Topics.Repartition
	n, owned := p.homes.owns(topic, partition)
	if !repartition && !owned {
		p.log.Info("channel partition not co-assigned with its repartition partition; sending its records through the repartition topic",
			zap.String("topic", topic), zap.Int("partition", partition))
		return ingestHandler{p.normalizer()}, nil
	}
	s, err := p.homes.acquire(partition,
		func() (*Enricher, error) { return p.restoreTable(ctx, partition) },
		func() (int64, int64, error) { return p.backlog(ctx, partition) })
	if err != nil {
		return nil, err
	}
	if repartition {
		return &sessionsHandler{s: s, p: p, partition: partition}, nil
	}
	return &homeHandler{n: p.normalizer(), p: p, s: s, source: topic + "/" + strconv.Itoa(partition),
		partition: partition, partitions: n, repartition: p.cfg.Topics.Repartition, observer: p.records(), routed: -1}, nil
}

// normalizer is stage 1 as both stages run it.
func (p *Pipeline) normalizer() *Normalizer {
	n := NewNormalizer(p.topics(), p.cfg.Inbound.MaxMessageBytes, p.obs.Records).WithMaxIDBytes(p.cfg.Inbound.MaxIDBytes)
	if !p.cfg.Inbound.FastPath {
		n.PartitionBySession()
	}
	return n
}

func (p *Pipeline) records() Observer {
	if p.obs.Records == nil {
		return nopObserver{}
	}
	return p.obs.Records
}

// restoreTable gives partition's session table: the one this instance kept from an earlier generation,
// caught up from the changelog offset it stopped at, or else a new one replaying the changelog
// partition from its beginning.
func (p *Pipeline) restoreTable(ctx context.Context, partition int) (*Enricher, error) {
	if k, ok := p.kept.take(partition); ok {
		err := p.resume(ctx, partition, k)
		if err == nil {
			return k.e, nil
		}
		if !errors.Is(err, kafkaedge.ErrGap) {
			p.kept.put(partition, k.e, k.next) // reading failed: the table is still good to catch up
			return nil, err
		}
		p.log.Info("kept sessions cannot be caught up; restoring from the beginning", zap.Int("partition", partition), zap.Error(err))
	}
	e := NewEnricher(p.topics(), p.cfg.Topics.Sessions, partition, p.cfg.Inbound.IdleTimeoutFor, p.obs.Sessions, nil).
		WithReplayWindow(p.cfg.Inbound.ReplayWindow).
		WithEvents(p.cfg.SessionEventsTopic()).
		WithMaxBytes(p.cfg.Inbound.MaxMessageBytes + config.EnrichmentHeadroom).
		WithUpstream(func() int64 { return p.marks.Of(partition) })
	start := time.Now()
	n, _, err := kafkaedge.ReadFrom(ctx, p.kafka, p.cfg.Topics.Sessions, partition, -1, p.restoreRecord(e, partition))
	if err != nil {
		return nil, err
	}
	e.Restored()
	p.obs.Restored("inbound-sessions", n, time.Since(start), false)
	p.log.Info("sessions restored", zap.Int("partition", partition), zap.Int("records", n),
		zap.Int("sessions", e.Sessions()), zap.Duration("took", time.Since(start)))
	return e, nil
}

// resume catches a kept table up with what the changelog partition got after it was given up: nothing
// when no one else owned the partition meanwhile.
func (p *Pipeline) resume(ctx context.Context, partition int, k kept) error {
	start := time.Now()
	n, end, err := kafkaedge.ReadFrom(ctx, p.kafka, p.cfg.Topics.Sessions, partition, k.next, p.restoreRecord(k.e, partition))
	if err != nil {
		return err
	}
	if n > 0 {
		// Another owner wrote meanwhile: take its states up as a restore would (its proactive expiries'
		// events are repeated).
		k.e.Restored()
	}
	p.obs.Restored("inbound-sessions", n, time.Since(start), true)
	p.log.Info("sessions kept", zap.Int("partition", partition), zap.Int("records", n), zap.Int64("from", k.next), zap.Int64("end", end),
		zap.Int("sessions", k.e.Sessions()), zap.Duration("took", time.Since(start)))
	return nil
}

func (p *Pipeline) restoreRecord(e *Enricher, partition int) func(key, value []byte) error {
	return func(key, value []byte) error {
		if err := e.Restore(key, value); err != nil {
			// A state that cannot be read must not stick the partition: its key starts fresh.
			p.log.Warn("skipping unreadable session state", zap.Int("partition", partition), zap.Error(err))
		}
		return nil
	}
}

type ingestHandler struct{ n *Normalizer }

func (h ingestHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	for i, rec := range batch {
		out[i] = h.n.Process(rec)
	}
	h.n.observer.Routed(0, repartitioned(out, h.n.topics.Repartition))
	return out
}

// sessionsHandler is stage 2 of one repartition partition. When the partition is given up with every
// output acknowledged, its table is kept (see keptTables).
type sessionsHandler struct {
	s         *slot
	p         *Pipeline
	partition int
}

func (h *sessionsHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for i, rec := range batch {
		out[i] = h.s.e.Process(rec)
	}
	coalesceChangelog(out, h.s.e.changelog) // one state per key and batch: its latest
	for _, rec := range batch {
		h.s.applied(rec)
	}
	if len(batch) > 0 {
		h.s.progressed()
	}
	return out
}

func (h *sessionsHandler) Tick(now time.Time) []stream.Output {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.e.Expire(now)
}

// Abandoned: the table holds decisions whose changelog records were never written; it must go.
func (h *sessionsHandler) Abandoned() {
	h.s.mu.Lock()
	h.s.abandoned = true
	h.s.mu.Unlock()
}

func (h *sessionsHandler) Close() { h.p.releaseSlot(h.partition, h.s) }

func (h *sessionsHandler) Lock(context.Context, []stream.Record) { h.s.writes.Lock() }
func (h *sessionsHandler) Unlock()                               { h.s.writes.Unlock() }

// closeTable withdraws a partition's table; unless it is abandoned, it is kept with the changelog end
// offset, for a rebalance that hands the partition back.
func (p *Pipeline) closeTable(e *Enricher, partition int, abandoned bool) {
	e.Close()
	if abandoned {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(p.cfg.Kafka.RequestTimeout, 10*time.Second))
	defer cancel()
	_, end, err := p.bounds(ctx, p.cfg.Topics.Sessions, partition)
	if err != nil {
		p.log.Debug("sessions not kept: changelog end unknown", zap.Int("partition", partition), zap.Error(err))
		return
	}
	e.table.Pause()
	p.kept.put(partition, e, end)
}

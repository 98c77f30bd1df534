package inbound

import (
	"cmp"
	"context"
	"errors"
	"regexp"
	"slices"
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
}

// NewPipeline builds the inbound pipeline from the configuration.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, obs Observers) (*Pipeline, error) {
	p := &Pipeline{cfg: cfg, kafka: factory, log: log.With(zap.String("pipeline", "inbound")), obs: obs, marks: NewWatermarks(),
		kept: newKeptTables(2 * (cfg.Kafka.Consumer.SessionTimeout + cfg.Kafka.Consumer.RebalanceTimeout))}
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
		Budget:      p.obs.Budget,
		Observer:    p.obs.Runner,
		Lag:         kafkaedge.Lag(p.kafka),
	}
}

// Run runs both stages until ctx ends; each drains and commits before returning.
func (p *Pipeline) Run(ctx context.Context) error {
	c := p.cfg
	broker := kafkaedge.NewBroker(p.kafka, p.obs.Stats)
	ingestCfg := p.stageConfig("inbound-ingest", c.Kafka.Consumer.GroupID)
	ingestCfg.Topics = p.connectorTopics
	ingestCfg.RefreshInterval = c.Inbound.TopicRefreshInterval
	ingestCfg.NewHandler = func(context.Context, string, int) (stage.Handler, error) {
		return ingestHandler{NewNormalizer(p.topics(), c.Inbound.MaxMessageBytes, p.obs.Records)}, nil
	}
	ingestCfg.Ready = func(err error) { p.obs.Ready(ReadyIngest, err) }
	ingest := stage.New(ingestCfg, broker, kafkaedge.NewSink(p.kafka, ingestCfg.Name, p.obs.Stats), p.log)

	sessionsCfg := p.stageConfig("inbound-sessions", c.Kafka.Consumer.GroupID+".sessions")
	sessionsCfg.Topics = func(context.Context) ([]string, error) { return []string{c.Topics.Repartition}, nil }
	sessionsCfg.RefreshInterval = time.Minute
	sessionsCfg.NewHandler = p.restoreSessions
	sessionsCfg.Ready = func(err error) { p.obs.Ready(ReadySessions, err) }
	sessions := stage.New(sessionsCfg, broker, kafkaedge.NewSink(p.kafka, sessionsCfg.Name, p.obs.Stats), p.log)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go p.watchUpstream(watchCtx, ingestCfg.GroupID, sessionsCfg.GroupID)

	errc := make(chan error, 2)
	go func() { errc <- ingest.Run(ctx) }()
	go func() { errc <- sessions.Run(ctx) }()
	return errors.Join(<-errc, <-errc)
}

// connectorTopics lists the topics named in the configuration or matching the pattern, sorted.
func (p *Pipeline) connectorTopics(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Kafka.RequestTimeout)
	defer cancel()
	names, err := kafkaedge.TopicNames(ctx, p.kafka)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if slices.Contains(p.cfg.Topics.Inbound, n) || (p.pattern != nil && p.pattern.MatchString(n)) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// watchInterval is how often the upstream watermarks are read: each reading costs a few requests per
// partition, and expiry needs seconds, not milliseconds.
const watchInterval = time.Second

// watchUpstream reads both inbound groups' offsets every watchInterval (or commit interval, if longer)
// into p.marks, the horizon of proactive expiry. A reading that fails is skipped: the watermarks stand
// still, which only delays expiry.
func (p *Pipeline) watchUpstream(ctx context.Context, ingestGroup, sessionsGroup string) {
	t := time.NewTicker(max(watchInterval, p.cfg.Kafka.Consumer.CommitInterval))
	defer t.Stop()
	var topics []string
	var listed time.Time
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
		sessions, err := kafkaedge.GroupOffsets(ctx, p.kafka, sessionsGroup, []string{p.cfg.Topics.Repartition})
		if err != nil {
			p.log.Debug("upstream watermark: sessions offsets not read", zap.Error(err))
			continue
		}
		p.marks.Observe(at.UnixMilli(), ingest, sessions)
	}
}

// restoreSessions builds the stage-2 handler of one partition: the table this instance kept from an
// earlier generation, caught up from the changelog offset it stopped at, or else a new one replaying the
// changelog partition from its beginning.
func (p *Pipeline) restoreSessions(ctx context.Context, _ string, partition int) (stage.Handler, error) {
	if k, ok := p.kept.take(partition); ok {
		h, err := p.resume(ctx, partition, k)
		if err == nil {
			return h, nil
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
	return &sessionsHandler{e: e, p: p, partition: partition}, nil
}

// resume catches a kept table up with what the changelog partition got after it was given up: nothing
// when no one else owned the partition meanwhile.
func (p *Pipeline) resume(ctx context.Context, partition int, k kept) (stage.Handler, error) {
	start := time.Now()
	n, end, err := kafkaedge.ReadFrom(ctx, p.kafka, p.cfg.Topics.Sessions, partition, k.next, p.restoreRecord(k.e, partition))
	if err != nil {
		return nil, err
	}
	if n > 0 {
		// Another owner wrote meanwhile: take its states up as a restore would (its proactive expiries'
		// events are repeated).
		k.e.Restored()
	}
	p.obs.Restored("inbound-sessions", n, time.Since(start), true)
	p.log.Info("sessions kept", zap.Int("partition", partition), zap.Int("records", n), zap.Int64("from", k.next), zap.Int64("end", end),
		zap.Int("sessions", k.e.Sessions()), zap.Duration("took", time.Since(start)))
	return &sessionsHandler{e: k.e, p: p, partition: partition}, nil
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
	return out
}

// sessionsHandler is stage 2 of one partition. When the partition is given up with every output
// acknowledged, its table is kept (see keptTables).
type sessionsHandler struct {
	e         *Enricher
	p         *Pipeline
	partition int
	abandoned bool
}

func (h *sessionsHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	for i, rec := range batch {
		out[i] = h.e.Process(rec)
	}
	return out
}

func (h *sessionsHandler) Tick(now time.Time) []stream.Output { return h.e.Expire(now) }

// Abandoned: the table holds decisions whose changelog records were never written; it must go.
func (h *sessionsHandler) Abandoned() { h.abandoned = true }

func (h *sessionsHandler) Close() {
	h.e.Close()
	if h.abandoned {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(h.p.cfg.Kafka.RequestTimeout, 10*time.Second))
	defer cancel()
	_, end, err := kafkaedge.Bounds(ctx, h.p.kafka, h.p.cfg.Topics.Sessions, h.partition)
	if err != nil {
		h.p.log.Debug("sessions not kept: changelog end unknown", zap.Int("partition", h.partition), zap.Error(err))
		return
	}
	h.e.table.Pause()
	h.p.kept.put(h.partition, h.e, end)
}

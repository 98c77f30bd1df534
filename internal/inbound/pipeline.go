package inbound

import (
	"context"
	"errors"
	"regexp"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
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

// outputTopics are the topics the inbound stages write, as the configuration names them.
func (p *Pipeline) outputTopics() Topics {
	t := p.cfg.Topics
	return Topics{Repartition: t.Repartition, CCM: t.CCMInbound, Notifications: t.Notifications}
}

// stageConfig is what both inbound stages share; the stage reports its readiness as condition.
func (p *Pipeline) stageConfig(name, group, condition string) stage.Config {
	c := p.cfg
	return stage.Config{
		Name: name, Pipeline: "inbound", GroupID: group, RefreshInterval: c.Inbound.TopicRefreshInterval,
		BatchSize: c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		RevokeWait:  c.Kafka.Consumer.RevokeWait,
		DeadLetters: deadletter.Builder{Topic: c.Topics.DeadLetter, MaxValueBytes: c.DeadLetters.MaxValueBytes},
		// Channel topics are written by connectors; only the repartition topic is cimstream's own.
		Entry:    func(topic string) bool { return topic != c.Topics.Repartition },
		Budget:   p.obs.Budget,
		Observer: p.obs.Runner,
		Lag:      kafkaedge.Lag(p.kafka),
		Ready:    func(err error) { p.obs.Ready(condition, err) },
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
	ingestCfg := p.stageConfig("inbound-ingest", ingestGroup, ReadyIngest)
	ingestCfg.Topics = p.ingestTopics
	ingestCfg.NewHandler = func(context.Context, string, int) (stage.Handler, error) {
		return ingestHandler{p.normalizer()}, nil
	}
	ingest := stage.New(ingestCfg, handoverBroker{Broker: broker, p: p, otherGroup: sessionsGroup, offsets: offsets},
		kafkaedge.NewSink(p.kafka, ingestCfg.Name, p.obs.Stats), p.log)

	sessionsCfg := p.stageConfig("inbound-sessions", sessionsGroup, ReadySessions)
	sessionsCfg.Topics = p.claimSessionsTopics
	sessionsCfg.NewHandler = p.newSessionsHandler
	sessionsCfg.Middleware = slotWrites
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

// normalizer is stage 1 as both stages run it.
func (p *Pipeline) normalizer() *Normalizer {
	n := NewNormalizer(p.outputTopics(), p.cfg.Inbound.MaxMessageBytes, p.obs.Records).WithMaxIDBytes(p.cfg.Inbound.MaxIDBytes)
	if !p.cfg.Inbound.FastPath {
		n.PartitionBySession()
	}
	return n
}

package inbound

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/consumer"
	"github.com/cimstream/cimstream/internal/kafkaclient"
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
	Runner   consumer.Observer
	// Restored is told how long restoring a partition's sessions took and how many records it replayed.
	Restored func(stage string, records int, took time.Duration)
	Ready    func(condition string, err error)
}

// Pipeline runs both inbound stages.
type Pipeline struct {
	cfg     config.Config
	kafka   *kafkaclient.Factory
	log     *zap.Logger
	obs     Observers
	pattern *regexp.Regexp
}

// NewPipeline builds the inbound pipeline from the configuration.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, obs Observers) (*Pipeline, error) {
	p := &Pipeline{cfg: cfg, kafka: factory, log: log.With(zap.String("pipeline", "inbound")), obs: obs}
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
		p.obs.Restored = func(string, int, time.Duration) {}
	}
	return p, nil
}

// Name implements service.Pipeline.
func (p *Pipeline) Name() string { return "inbound" }

func (p *Pipeline) topics() Topics {
	t := p.cfg.Topics
	return Topics{Repartition: t.Repartition, CCM: t.CCMInbound, Notifications: t.Notifications, DeadLetter: t.DeadLetter}
}

// Run runs both stages until ctx ends; each drains and commits before returning.
func (p *Pipeline) Run(ctx context.Context) error {
	c := p.cfg
	ingest := consumer.New(consumer.Config{
		Name:            "inbound-ingest",
		GroupID:         c.Kafka.Consumer.GroupID,
		Topics:          p.connectorTopics,
		RefreshInterval: c.Inbound.TopicRefreshInterval,
		NewHandler: func(context.Context, string, int) (consumer.Handler, error) {
			return ingestHandler{NewNormalizer(p.topics(), c.Inbound.MaxMessageBytes, p.obs.Records)}, nil
		},
		BatchSize: c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		Observer: p.obs.Runner,
		Ready:    func(err error) { p.obs.Ready(ReadyIngest, err) },
	}, p.kafka, p.log)
	sessions := consumer.New(consumer.Config{
		Name:            "inbound-sessions",
		GroupID:         c.Kafka.Consumer.GroupID + ".sessions",
		Topics:          func(context.Context) ([]string, error) { return []string{c.Topics.Repartition}, nil },
		RefreshInterval: time.Minute,
		NewHandler:      p.restoreSessions,
		BatchSize:       c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		Observer: p.obs.Runner,
		Ready:    func(err error) { p.obs.Ready(ReadySessions, err) },
	}, p.kafka, p.log)
	errc := make(chan error, 2)
	go func() { errc <- ingest.Run(ctx) }()
	go func() { errc <- sessions.Run(ctx) }()
	err := errors.Join(<-errc, <-errc)
	return errors.Join(err, ingest.Close(), sessions.Close())
}

// connectorTopics lists the topics named in the configuration or matching the pattern, sorted.
func (p *Pipeline) connectorTopics(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Kafka.RequestTimeout)
	defer cancel()
	names, err := consumer.TopicNames(ctx, p.kafka)
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

// restoreSessions builds the stage-2 handler of one partition, replaying its changelog partition first.
func (p *Pipeline) restoreSessions(ctx context.Context, _ string, partition int) (consumer.Handler, error) {
	e := NewEnricher(p.topics(), p.cfg.Topics.Sessions, partition, p.cfg.Inbound.IdleTimeoutFor, p.obs.Sessions, nil)
	start := time.Now()
	n, err := consumer.ReadAll(ctx, p.kafka, p.cfg.Topics.Sessions, partition, func(key, value []byte) error {
		if err := e.Restore(key, value); err != nil {
			// A state that cannot be read must not stick the partition: its key starts fresh.
			p.log.Warn("skipping unreadable session state", zap.Int("partition", partition), zap.Error(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.Restored()
	p.obs.Restored("inbound-sessions", n, time.Since(start))
	p.log.Info("sessions restored", zap.Int("partition", partition), zap.Int("records", n),
		zap.Int("sessions", e.Sessions()), zap.Duration("took", time.Since(start)))
	return sessionsHandler{e}, nil
}

type ingestHandler struct{ n *Normalizer }

func (h ingestHandler) Process(batch []stream.Record) []stream.Output {
	out := make([]stream.Output, len(batch))
	for i, rec := range batch {
		out[i] = h.n.Process(rec)
	}
	return out
}

func (ingestHandler) Tick(time.Time) []stream.Output { return nil }

type sessionsHandler struct{ e *Enricher }

func (h sessionsHandler) Process(batch []stream.Record) []stream.Output {
	out := make([]stream.Output, 0, 2*len(batch))
	for _, rec := range batch {
		out = append(out, h.e.Process(rec)...)
	}
	return out
}

func (h sessionsHandler) Tick(now time.Time) []stream.Output { return h.e.Expire(now) }

func (h sessionsHandler) Close() { h.e.Close() }

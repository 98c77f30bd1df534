package outbound

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/route"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

// ReadyCondition is the outbound pipeline's readiness condition.
const ReadyCondition = "outbound"

// Pipeline runs the outbound stage.
type Pipeline struct {
	cfg    config.Config
	kafka  *kafkaclient.Factory
	log    *zap.Logger
	router *route.Router
	obs    Observers
}

// Observers gathers what the pipeline reports to; any may be nil.
type Observers struct {
	Notifications Observer
	Runner        stage.Observer
	Stats         *kafkaedge.Stats
	Budget        *stage.Budget
	Ready         func(condition string, err error)
}

// NewPipeline builds the outbound pipeline.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, obs Observers) *Pipeline {
	if obs.Ready == nil {
		obs.Ready = func(string, error) {}
	}
	return &Pipeline{cfg: cfg, kafka: factory, log: log.With(zap.String("pipeline", "outbound")),
		router: route.New(cfg.Outbound.Routes, cfg.ChannelMap()), obs: obs}
}

// Name implements service.Pipeline.
func (p *Pipeline) Name() string { return "outbound" }

// Run consumes the CCM's outbound topic until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	c := p.cfg
	cfg := stage.Config{
		Name: "outbound", Pipeline: "outbound", GroupID: c.Kafka.Consumer.GroupID + ".outbound",
		Topics:          func(context.Context) ([]string, error) { return []string{c.Topics.CCMOutbound}, nil },
		RefreshInterval: time.Minute,
		NewHandler: func(context.Context, string, int) (stage.Handler, error) {
			return NewProcessor(p.router, Options{Notifications: c.Topics.Notifications,
				Accepted: c.Outbound.AcceptedNotifications, MaxBytes: c.Inbound.MaxMessageBytes,
				MaxIDBytes: c.Inbound.MaxIDBytes, Observer: p.obs.Notifications}), nil
		},
		BatchSize: c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		GiveUpAfter: c.Outbound.DeliveryTimeout,
		RevokeWait:  c.Kafka.Consumer.RevokeWait,
		DeadLetters: deadletter.Builder{Topic: c.Topics.DeadLetter, MaxValueBytes: c.DeadLetters.MaxValueBytes},
		// The CCM's outbound topic is written by the CCM: its cimstream.* headers are not cimstream's.
		Entry:    func(string) bool { return true },
		Budget:   p.obs.Budget,
		Observer: p.obs.Runner,
		Lag:      kafkaedge.Lag(p.kafka),
		Ready:    func(err error) { p.obs.Ready(ReadyCondition, err) },
	}
	runner := stage.New(cfg, kafkaedge.NewBroker(p.kafka, p.obs.Stats), kafkaedge.NewSink(p.kafka, cfg.Name, p.obs.Stats), p.log)
	return runner.Run(ctx)
}

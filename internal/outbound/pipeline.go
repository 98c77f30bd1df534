package outbound

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/consumer"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/route"
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
	Runner        consumer.Observer
	Ready         func(condition string, err error)
}

// NewPipeline builds the outbound pipeline.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, obs Observers) *Pipeline {
	if obs.Ready == nil {
		obs.Ready = func(string, error) {}
	}
	return &Pipeline{cfg: cfg, kafka: factory, log: log.With(zap.String("pipeline", "outbound")),
		router: route.New(cfg.Outbound.Routes, cfg.Outbound.Channels), obs: obs}
}

// Name implements service.Pipeline.
func (p *Pipeline) Name() string { return "outbound" }

// Run consumes the CCM's outbound topic until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	c := p.cfg
	runner := consumer.New(consumer.Config{
		Name:            "outbound",
		GroupID:         c.Kafka.Consumer.GroupID + ".outbound",
		Topics:          func(context.Context) ([]string, error) { return []string{c.Topics.CCMOutbound}, nil },
		RefreshInterval: time.Minute,
		NewHandler: func(context.Context, string, int) (consumer.Handler, error) {
			return NewProcessor(p.router, Options{Notifications: c.Topics.Notifications, DeadLetter: c.Topics.DeadLetter,
				Accepted: c.Outbound.AcceptedNotifications, MaxBytes: c.Inbound.MaxMessageBytes, Observer: p.obs.Notifications}), nil
		},
		BatchSize: c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		GiveUpAfter: c.Outbound.DeliveryTimeout,
		Observer:    p.obs.Runner,
		Ready:       func(err error) { p.obs.Ready(ReadyCondition, err) },
	}, p.kafka, p.log)
	err := runner.Run(ctx)
	if cerr := runner.Close(); err == nil {
		err = cerr
	}
	return err
}

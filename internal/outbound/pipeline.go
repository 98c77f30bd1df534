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
	cfg      config.Config
	kafka    *kafkaclient.Factory
	log      *zap.Logger
	router   *route.Router
	observer Observer
	ready    func(condition string, err error)
}

// NewPipeline builds the outbound pipeline; observer and ready may be nil.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, observer Observer, ready func(string, error)) *Pipeline {
	if ready == nil {
		ready = func(string, error) {}
	}
	return &Pipeline{cfg: cfg, kafka: factory, log: log.With(zap.String("pipeline", "outbound")),
		router: route.New(cfg.Outbound.Routes, cfg.Outbound.Channels), observer: observer, ready: ready}
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
				Accepted: c.Outbound.AcceptedNotifications, MaxBytes: c.Inbound.MaxMessageBytes, Observer: p.observer}), nil
		},
		BatchSize: c.Kafka.Consumer.BatchSize, Linger: c.Kafka.Consumer.Linger, CommitInterval: c.Kafka.Consumer.CommitInterval,
		GiveUpAfter: c.Outbound.DeliveryTimeout,
		Ready:       func(err error) { p.ready(ReadyCondition, err) },
	}, p.kafka, p.log)
	err := runner.Run(ctx)
	if cerr := runner.Close(); err == nil {
		err = cerr
	}
	return err
}

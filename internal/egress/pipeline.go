package egress

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// ReadyCondition is the readiness condition of the webhook channel named after the colon.
const ReadyCondition = "egress:"

// Observers gathers what the pipeline reports to; any may be nil.
type Observers struct {
	Egress Observer
	Runner stage.Observer
	Stats  *kafkaedge.Stats
	Budget *stage.Budget
	Ready  func(condition string, err error)
}

// Pipeline runs one Channel per configured webhook, each with its own consumer group, so a dead
// connector holds up nothing but its own channel.
type Pipeline struct {
	channels []*Channel
}

// NewPipeline builds the webhook channels of cfg.Egress.
func NewPipeline(cfg config.Config, factory *kafkaclient.Factory, log *zap.Logger, obs Observers) *Pipeline {
	if obs.Ready == nil {
		obs.Ready = func(string, error) {}
	}
	e := cfg.Egress
	p := &Pipeline{}
	for _, w := range e.Webhooks {
		condition := ReadyCondition + w.Channel
		c := Config{
			Channel: w.Channel, Topic: topics.OutboundTopic(w.Channel),
			GroupID:       fmt.Sprintf("%s.egress.%s", cfg.Kafka.Consumer.GroupID, w.Channel),
			Notifications: cfg.Topics.Notifications,
			DeadLetters:   deadletter.Builder{Topic: cfg.Topics.DeadLetter, MaxValueBytes: cfg.DeadLetters.MaxValueBytes},
			Retry:         RetryPolicy{MinBackoff: e.Retry.MinBackoff, MaxBackoff: e.Retry.MaxBackoff, Deadline: e.Retry.Deadline},
			Concurrency:   e.Concurrency, MaxInFlight: e.MaxInFlight,
			CommitInterval: cfg.Kafka.Consumer.CommitInterval, RevokeWait: cfg.Kafka.Consumer.RevokeWait,
			Limits: cim.Limits{MaxBytes: cfg.Inbound.MaxMessageBytes, MaxIDBytes: cfg.Inbound.MaxIDBytes},
			Budget: obs.Budget, Channels: len(e.Webhooks), Lag: kafkaedge.Lag(factory), Runner: obs.Runner, Observer: obs.Egress,
			Ready: func(err error) { obs.Ready(condition, err) },
		}
		post := NewHTTPPoster(w.URL, w.Secret, e.RequestTimeout, e.Concurrency)
		post.SignV1 = e.SignatureV1
		p.channels = append(p.channels, NewChannel(c, kafkaedge.NewBroker(factory, obs.Stats),
			kafkaedge.NewSink(factory, stageName, obs.Stats), post, log))
	}
	return p
}

// Name implements service.Pipeline.
func (p *Pipeline) Name() string { return "egress" }

// Run delivers every channel until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range p.channels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

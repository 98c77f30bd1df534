package egress

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// stageName labels the egress in the stage metrics (records consumed and produced, dead letters).
const stageName = "egress"

// Config describes one webhook channel.
type Config struct {
	Channel       string
	Topic         string // cim.outbound.<channel>
	GroupID       string // one group per channel, so a dead connector holds up no other channel
	Notifications string
	DeadLetters   deadletter.Builder
	Retry         RetryPolicy
	Concurrency   int // POSTs in flight at most, across the channel's partitions
	MaxInFlight   int // records held per partition
	// CommitInterval is how often settled offsets are committed; RevokeWait how long outcome writes
	// outlive the partition (a rebalance or a stop) so decided messages are recorded.
	CommitInterval time.Duration
	RevokeWait     time.Duration
	Budget         *stage.Budget
	// Limits are the inbound limits a connector's notification answer is checked with, as the CCM would
	// check it from the connector itself (zero fields: the defaults).
	Limits cim.Limits
	// Channels is how many webhook channels share the egress's half of Budget (0: one).
	Channels int
	// Lag computes the group's lag for the Runner observer (nil: not computed), so the consumer-lag panel
	// and alert cover webhook channels too.
	Lag      func(ctx context.Context, group string, topics []string) ([]stage.PartitionLag, error)
	Runner   stage.Observer // nil: nobody
	Observer Observer       // nil: nobody
	Ready    func(error)    // nil: nobody
}

// Channel consumes one webhook channel's topic on the stage runtime, each partition's messages handled
// by a keyed scheduler (stage.Async), and delivers them.
type Channel struct {
	cfg    Config
	broker stage.Broker
	sink   stage.Sink
	del    *deliverer
	busy   *keyBusy // keys with a message in flight, across the channel's partitions
	out    outcome
	log    *zap.Logger
	entry  *stage.EntryGuard
}

// NewChannel returns a channel that posts through post.
func NewChannel(cfg Config, broker stage.Broker, sink stage.Sink, post Poster, log *zap.Logger) *Channel {
	if cfg.Runner == nil {
		cfg.Runner = stage.NopObserver{}
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	cfg.MaxInFlight = max(cfg.MaxInFlight, 1)
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	log = log.With(zap.String("channel", cfg.Channel))
	return &Channel{cfg: cfg, broker: broker, sink: sink, log: log, busy: newKeyBusy(),
		entry: &stage.EntryGuard{Stage: stageName, Observer: cfg.Runner, Log: log.With(zap.String("stage", stageName))},
		del: &deliverer{channel: cfg.Channel, post: post, retry: cfg.Retry, slots: make(chan struct{}, cfg.Concurrency), limits: cfg.Limits,
			obs: cfg.Observer, now: time.Now, sleep: retry.Sleep},
		out: outcome{notifications: cfg.Notifications, limits: cfg.Limits}}
}

// Run consumes until ctx ends, then records what was decided, commits and returns nil.
func (c *Channel) Run(ctx context.Context) error {
	cfg := c.cfg
	runner := stage.New(stage.Config{
		Name: stageName, Pipeline: stageName, GroupID: cfg.GroupID,
		Topics:         func(context.Context) ([]string, error) { return []string{cfg.Topic}, nil },
		NewAsync:       c.partition,
		CommitInterval: cfg.CommitInterval, RevokeWait: cfg.RevokeWait,
		DeadLetters: cfg.DeadLetters,
		// A webhook channel's topic can be written by anyone with access, not only the outbound stage.
		Entry:    func(string) bool { return true },
		Budget:   cfg.Budget,
		Observer: cfg.Runner,
		Lag:      cfg.Lag,
		Ready:    cfg.Ready,
		Pending: func(oldest time.Time) {
			age := time.Duration(0)
			if !oldest.IsZero() {
				age = max(0, time.Since(oldest))
			}
			cfg.Observer.OldestPending(cfg.Channel, age)
		},
		Refused: notificationRefused,
	}, c.broker, c.sink, c.log)
	return runner.Run(ctx)
}

// notificationRefused is the dead letter of a message whose notification the topic refuses for good:
// it carries the notification instead of dropping it.
func notificationRefused(_ stream.Record, out stream.Output, err error) stream.Result {
	return stream.Result{Reject: cim.Violations{{Code: CodeNotificationRefused,
		Message: "the connector's DELIVERYNOTIFICATION was refused by " + out.Topic + ": " + err.Error()}}, DeadLetterValue: out.Value}
}

// partition makes the keyed scheduler of one assigned partition.
func (c *Channel) partition(_ context.Context, p stage.AsyncPartition) (stage.Async, error) {
	log := c.log.With(zap.String("topic", p.Topic), zap.Int("partition", p.Partition))
	k := newKeyed(c.cfg.MaxInFlight)
	// One key holds at most its share of the POSTs in flight in full; its later records wait as offset and
	// key, re-read when their turn comes, so a failing customer's backlog leaves the bound to the other
	// customers of the partition.
	k.perKey = max(1, c.cfg.MaxInFlight/c.cfg.Concurrency)
	k.busy = c.busy
	k.budget = c.cfg.Budget
	// The egress as a whole holds at most half of the instance's memory budget, split over the configured
	// channels, so connectors that keep failing cannot stall a healthy channel or the other pipelines
	// that share the budget.
	if total := c.cfg.Budget.Total(); total > 0 {
		k.maxSize = max(1, total/2/int64(max(c.cfg.Channels, 1))/int64(max(p.Assigned, 1)))
	}
	k.deliver = func(ctx context.Context, r stream.Record) (Answer, bool) {
		return c.del.deliverDraining(ctx, p.Drain, r)
	}
	k.result = c.out.result
	k.settled = func(r stream.Record, v Answer, took time.Duration) {
		c.cfg.Observer.Delivered(c.cfg.Channel, v.Kind.String(), took)
	}
	k.load = func(ctx context.Context, stub stream.Record) (stream.Record, bool) { return c.reread(ctx, log, stub) }
	return k, nil
}

// reread fetches the record of a stub (kept as offset and key) again, retrying while the broker fails;
// false when ctx ended first. A record the topic no longer holds (retention) comes back as the stub
// itself, with no value: it is not POSTed but reported FAILED/500 and dead-lettered.
func (c *Channel) reread(ctx context.Context, log *zap.Logger, stub stream.Record) (stream.Record, bool) {
	backoff := stage.Rejoins
	for {
		r, err := c.readOne(ctx, stub)
		if err == nil {
			if r.Offset != stub.Offset {
				log.Error("message gone from the topic (retention) before its turn; reported FAILED and dead-lettered", zap.Int64("offset", stub.Offset))
				return stub, true
			}
			return r, true
		}
		if ctx.Err() != nil {
			return stub, false
		}
		c.cfg.Runner.FetchFailed(stageName)
		log.Warn("cannot re-read a message; retrying", zap.Int64("offset", stub.Offset), zap.Error(err))
		if !backoff.Wait(ctx) {
			return stub, false
		}
	}
}

func (c *Channel) readOne(ctx context.Context, stub stream.Record) (stream.Record, error) {
	reader, err := c.broker.Reader(stageName, stub.Topic, stub.Partition, stub.Offset)
	if err != nil {
		return stream.Record{}, err
	}
	defer reader.Close()
	return c.entry.Reader(reader).Fetch(ctx)
}

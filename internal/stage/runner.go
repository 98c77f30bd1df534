package stage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

// Observer is told what a stage does (metrics). Every method must be cheap and safe for concurrent use.
type Observer interface {
	Consumed(stage, topic string, n int)
	Produced(stage, topic string, n int)
	Batch(stage string, took time.Duration, recordTimes []time.Time)
	Retried(stage string, n int)
	GaveUp(stage string, n int)
	Generation(stage string, partitions int)
	Lag(group, topic string, partition int, lag int64)
	ForgetLag(group string)
	FetchFailed(stage string)
	// RenamedHeaders counts reserved headers renamed on records of an entry topic (Config.Entry).
	RenamedHeaders(stage, topic string, n int)
	DeadLettered(stage string, rec stream.Record, codes []string)
}

// NopObserver is an Observer that is told nothing.
type NopObserver struct{}

func (NopObserver) Consumed(string, string, int)                 {}
func (NopObserver) Produced(string, string, int)                 {}
func (NopObserver) Batch(string, time.Duration, []time.Time)     {}
func (NopObserver) Retried(string, int)                          {}
func (NopObserver) GaveUp(string, int)                           {}
func (NopObserver) Generation(string, int)                       {}
func (NopObserver) Lag(string, string, int, int64)               {}
func (NopObserver) ForgetLag(string)                             {}
func (NopObserver) FetchFailed(string)                           {}
func (NopObserver) RenamedHeaders(string, string, int)           {}
func (NopObserver) DeadLettered(string, stream.Record, []string) {}

// PartitionLag is the lag of one partition for a group.
type PartitionLag struct {
	Topic     string
	Partition int
	Lag       int64
}

// Config describes one stage.
type Config struct {
	Name     string // for logs and metrics: "inbound-ingest", "inbound-sessions", "outbound"
	Pipeline string // "inbound" or "outbound", on dead letters
	GroupID  string
	// Topics returns the topics to consume; it is called again every RefreshInterval (zero: never) and a
	// change makes the stage rejoin the group with the new list.
	Topics          func(ctx context.Context) ([]string, error)
	RefreshInterval time.Duration
	// NewHandler makes the handler of a newly assigned partition (restoring its state first).
	NewHandler func(ctx context.Context, topic string, partition int) (Handler, error)
	// Middleware wraps each batch's step of a handler made by NewHandler (nil: none).
	Middleware Middleware
	// NewAsync, set instead of NewHandler, makes the Async handler of a newly assigned partition.
	NewAsync func(ctx context.Context, p AsyncPartition) (Async, error)
	// Pending, for an Async stage, is told on every commit tick the record time of its oldest unsettled
	// input (zero: none) and zero when a generation is over.
	Pending func(oldest time.Time)
	// Refused makes the dead letter of an input whose output the broker refused for good (nil: code
	// too_large or refused, carrying the input).
	Refused        func(input stream.Record, out stream.Output, err error) stream.Result
	BatchSize      int           // records per batch at most
	Linger         time.Duration // how long a batch waits to fill after its first record
	CommitInterval time.Duration
	// GiveUpAfter bounds the retries of a Settler's Process outputs; zero retries until the write
	// succeeds or the partition is lost. Dead letters and Settle outputs are never given up on.
	GiveUpAfter time.Duration
	// RevokeWait is how long a partition that was revoked waits for a write in flight to finish before
	// it lets the rebalance go on (default 5 s).
	RevokeWait  time.Duration
	DeadLetters deadletter.Builder
	// Entry reports whether records of topic come from outside cimstream (connectors, the CCM): their
	// headers in cimstream's namespace are renamed as they are read (stream.RenameReserved), before the
	// handler, a dead letter or the budget sees them. nil: every topic is cimstream's own.
	Entry func(topic string) bool
	// Budget bounds the bytes held by all stages of the instance (nil: unbounded).
	Budget   *Budget
	Observer Observer // nil: nobody
	// Lag computes the group's lag every LagInterval for the Observer (nil: not computed).
	Lag         func(ctx context.Context, group string, topics []string) ([]PartitionLag, error)
	LagInterval time.Duration
	// Ready is told when the stage has joined and every assigned partition is restored (nil), or why not.
	Ready func(error)
}

// Runner runs one stage.
type Runner struct {
	cfg    Config
	broker Broker
	sink   Sink
	log    *zap.Logger
	entry  *EntryGuard
	steps  stepper
}

// New returns a runner.
func New(cfg Config, broker Broker, sink Sink, log *zap.Logger) *Runner {
	if cfg.Ready == nil {
		cfg.Ready = func(error) {}
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = 10 * time.Second
	}
	if cfg.RevokeWait <= 0 {
		cfg.RevokeWait = 5 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1
	}
	cfg.DeadLetters.Pipeline = cfg.Pipeline
	log = log.With(zap.String("stage", cfg.Name))
	return &Runner{cfg: cfg, broker: broker, sink: sink, log: log, entry: &EntryGuard{Stage: cfg.Name, Observer: cfg.Observer, Log: log},
		steps: newStepper(cfg.Observer, cfg.Name)}
}

// Run consumes until ctx is cancelled, then drains the batch in hand, commits and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	r.cfg.Ready(errors.New("joining the consumer group"))
	backoff := Rejoins
	waiting := false
	for ctx.Err() == nil {
		topics, err := r.cfg.Topics(ctx)
		if err != nil {
			r.cfg.Ready(err)
			r.log.Warn("cannot list topics", zap.Error(err))
			backoff.Wait(ctx)
			continue
		}
		backoff.Reset()
		if len(topics) == 0 {
			// Nothing to consume is a healthy state (no channel topic exists yet): ready, and look again.
			r.cfg.Ready(nil)
			if !waiting {
				r.log.Info("no topics to consume yet; waiting for one to appear")
				waiting = true
			}
			retry.Sleep(ctx, r.cfg.RefreshInterval)
			continue
		}
		waiting = false
		if err := r.runGroup(ctx, topics); err != nil && ctx.Err() == nil {
			r.cfg.Ready(err)
			r.log.Warn("consumer group stopped; rejoining", zap.Error(err))
			backoff.Wait(ctx)
		}
	}
	return nil
}

// runGroup consumes topics until ctx ends or the topic list changes.
func (r *Runner) runGroup(ctx context.Context, topics []string) error {
	group, err := r.broker.Group(r.cfg.GroupID, topics)
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", r.cfg.GroupID, err)
	}
	defer group.Close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.cfg.RefreshInterval > 0 {
		go r.watchTopics(runCtx, cancel, topics)
	}
	if r.cfg.Lag != nil {
		go r.reportLag(runCtx, topics)
	}
	r.log.Info("joining consumer group", zap.String("group", r.cfg.GroupID), zap.Strings("topics", topics))
	for runCtx.Err() == nil {
		gen, err := group.Next(runCtx)
		if err != nil {
			if runCtx.Err() != nil {
				return nil
			}
			return err
		}
		r.runGeneration(runCtx, gen)
	}
	return nil
}

// watchTopics cancels the group when the topics to consume change (a new channel topic appeared).
func (r *Runner) watchTopics(ctx context.Context, changed context.CancelFunc, current []string) {
	retry.Every(ctx, r.cfg.RefreshInterval, func() bool {
		topics, err := r.cfg.Topics(ctx)
		if err == nil && !slices.Equal(topics, current) {
			r.log.Info("topics changed; rejoining", zap.Strings("topics", topics))
			changed()
			return false
		}
		return true
	})
}

// reportLag reports the group's lag every LagInterval.
func (r *Runner) reportLag(ctx context.Context, topics []string) {
	report := func() bool {
		if lags, err := r.cfg.Lag(ctx, r.cfg.GroupID, topics); err == nil {
			r.cfg.Observer.ForgetLag(r.cfg.GroupID)
			for _, l := range lags {
				r.cfg.Observer.Lag(r.cfg.GroupID, l.Topic, l.Partition, l.Lag)
			}
		} else if ctx.Err() == nil {
			r.log.Debug("lag not computed", zap.Error(err))
		}
		return true
	}
	report()
	retry.Every(ctx, r.cfg.LagInterval, report)
}

// runGeneration starts one worker per assigned partition and waits for all to end (rebalance or stop).
//
// kafka-go ends a generation as soon as any function given to Generation.Start returns, which would cut
// short the other partitions' final batch and commit on a graceful stop. So the generation gets a single
// function that runs every partition worker and returns only when all of them have finished.
func (r *Runner) runGeneration(stop context.Context, gen Generation) {
	assignments := gen.Assignments()
	restored := make(chan struct{}, len(assignments))
	finished := make(chan struct{})
	commits := newCommitter(gen, r.log)
	gen.Start(func(genCtx context.Context) {
		defer close(finished)
		ticks, stopTicks := context.WithCancel(context.Background())
		go retry.Every(ticks, r.cfg.CommitInterval, func() bool {
			commits.flush()
			if r.cfg.Pending != nil {
				r.cfg.Pending(commits.oldest())
			}
			return true
		})
		var wg sync.WaitGroup
		for _, a := range assignments {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.partition(genCtx, stop, commits, a, len(assignments), restored)
			}()
		}
		wg.Wait()
		stopTicks()
		commits.flush() // the last batches of a graceful stop, while the generation is still ours
		if r.cfg.Pending != nil {
			r.cfg.Pending(time.Time{})
		}
	})
	r.log.Info("partitions assigned", zap.Int32("generation", gen.ID()), zap.Int("partitions", len(assignments)))
	r.cfg.Observer.Generation(r.cfg.Name, len(assignments))
	go func() {
		for range assignments {
			select {
			case <-restored:
			case <-finished:
				return
			}
		}
		r.cfg.Ready(nil)
	}()
	<-finished
}

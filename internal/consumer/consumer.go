// Package consumer runs a pipeline stage on Kafka: it joins a consumer group, gives each assigned
// partition its own handler and reader, writes the handler's outputs with acks=all, and commits an input
// offset only after everything produced from the records before it was acknowledged.
//
// It is the only place where kafka-go meets pipeline logic; handlers see stream.Record and
// stream.Output only.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stream"
)

// Handler processes the records of one partition, in order.
type Handler interface {
	// Process returns the outputs of a batch, in the order they must be written.
	Process(batch []stream.Record) []stream.Output
	// Tick is called about once per commit interval with the wall clock, for housekeeping outputs
	// (tombstones of expired state).
	Tick(now time.Time) []stream.Output
}

// Settler is a Handler whose outputs are confirmed in a second step: after the outputs of Process were
// acknowledged, or given up on after Config.GiveUpAfter, Settle returns the records that report the
// outcome (delivery notifications). failed maps input offsets to why their outputs were given up on.
type Settler interface {
	Settle(failed map[int64]error) []stream.Output
}

// Closer is a Handler that wants to know when its partition is given up (revoked or stopping).
type Closer interface {
	Close()
}

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
	ReaderStats(stage string, s kafka.ReaderStats)
	WatchWriter(stage, name string, w *kafka.Writer)
}

type nopObserver struct{}

func (nopObserver) Consumed(string, string, int)              {}
func (nopObserver) Produced(string, string, int)              {}
func (nopObserver) Batch(string, time.Duration, []time.Time)  {}
func (nopObserver) Retried(string, int)                       {}
func (nopObserver) GaveUp(string, int)                        {}
func (nopObserver) Generation(string, int)                    {}
func (nopObserver) Lag(string, string, int, int64)            {}
func (nopObserver) ForgetLag(string)                          {}
func (nopObserver) ReaderStats(string, kafka.ReaderStats)     {}
func (nopObserver) WatchWriter(string, string, *kafka.Writer) {}

// HandlerFactory makes the handler of a newly assigned partition (restoring its state first).
type HandlerFactory func(ctx context.Context, topic string, partition int) (Handler, error)

// Config describes one stage.
type Config struct {
	Name    string // for logs and metrics: "inbound-ingest", "inbound-sessions", "outbound"
	GroupID string
	// Topics returns the topics to consume; it is called again every RefreshInterval and a change makes
	// the stage rejoin the group with the new list.
	Topics          func(ctx context.Context) ([]string, error)
	RefreshInterval time.Duration
	NewHandler      HandlerFactory
	BatchSize       int           // records per batch at most
	Linger          time.Duration // how long a batch waits to fill after its first record
	CommitInterval  time.Duration
	// GiveUpAfter bounds the retries of a Process output before the Settler is told it failed; zero
	// retries until the write succeeds or the stage stops (nothing is given up).
	GiveUpAfter time.Duration
	// Observer is told what happens (nil: nobody).
	Observer Observer
	// LagInterval is how often the group's lag is computed for the Observer.
	LagInterval time.Duration
	// Ready is told when the stage has joined and every assigned partition is restored (nil), or why not.
	Ready func(error)
}

// Runner runs one stage.
type Runner struct {
	cfg      Config
	kafka    *kafkaclient.Factory
	log      *zap.Logger
	keyed    *kafka.Writer // partition chosen by key (Murmur2)
	explicit *kafka.Writer // partition chosen by the handler (state changelogs)
}

// New returns a runner; Close releases its writers.
func New(cfg Config, factory *kafkaclient.Factory, log *zap.Logger) *Runner {
	if cfg.Ready == nil {
		cfg.Ready = func(error) {}
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = 10 * time.Second
	}
	explicit := factory.Writer("")
	explicit.Balancer = explicitPartition{}
	keyed := factory.Writer("")
	cfg.Observer.WatchWriter(cfg.Name, "keyed", keyed)
	cfg.Observer.WatchWriter(cfg.Name, "partitioned", explicit)
	return &Runner{cfg: cfg, kafka: factory, log: log.With(zap.String("stage", cfg.Name)), keyed: keyed, explicit: explicit}
}

// explicitPartition writes each message to the partition the handler chose.
type explicitPartition struct{}

func (explicitPartition) Balance(msg kafka.Message, partitions ...int) int {
	if slices.Contains(partitions, msg.Partition) {
		return msg.Partition
	}
	return partitions[msg.Partition%len(partitions)] // the topic shrank: never happens with managed topics
}

// Close flushes and closes the writers.
func (r *Runner) Close() error {
	return errors.Join(r.keyed.Close(), r.explicit.Close())
}

// Run consumes until ctx is cancelled, then drains the batch in hand, commits and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	r.cfg.Ready(errors.New("joining the consumer group"))
	backoff := time.Second
	waiting := false
	for ctx.Err() == nil {
		topics, err := r.cfg.Topics(ctx)
		if err != nil {
			r.cfg.Ready(err)
			r.log.Warn("cannot list topics", zap.Error(err))
			sleep(ctx, min(backoff, r.cfg.RefreshInterval))
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		if len(topics) == 0 {
			// Nothing to consume is a healthy state (no channel topic exists yet): ready, and look again.
			r.cfg.Ready(nil)
			if !waiting {
				r.log.Info("no topics to consume yet; waiting for one to appear")
				waiting = true
			}
			sleep(ctx, r.cfg.RefreshInterval)
			continue
		}
		waiting = false
		if err := r.runGroup(ctx, topics); err != nil && ctx.Err() == nil {
			r.cfg.Ready(err)
			r.log.Warn("consumer group stopped; rejoining", zap.Error(err))
			sleep(ctx, time.Second)
		}
	}
	return nil
}

// runGroup consumes topics until ctx ends or the topic list changes.
func (r *Runner) runGroup(ctx context.Context, topics []string) error {
	cg, err := kafka.NewConsumerGroup(r.kafka.GroupConfig(r.cfg.GroupID, topics))
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", r.cfg.GroupID, err)
	}
	defer cg.Close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.watchTopics(runCtx, cancel, topics)
	go r.reportLag(runCtx, topics)
	r.log.Info("joining consumer group", zap.String("group", r.cfg.GroupID), zap.Strings("topics", topics))
	for runCtx.Err() == nil {
		gen, err := kafkaclient.NextGeneration(runCtx, cg)
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
	t := time.NewTicker(r.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			topics, err := r.cfg.Topics(ctx)
			if err == nil && !slices.Equal(topics, current) {
				r.log.Info("topics changed; rejoining", zap.Strings("topics", topics))
				changed()
				return
			}
		}
	}
}

// runGeneration starts one worker per assigned partition and waits for all to end (rebalance or stop).
//
// kafka-go ends a generation as soon as any function given to Generation.Start returns, which would cut
// short the other partitions' final batch and commit on a graceful stop. So the generation gets a single
// function that runs every partition worker and returns only when all of them have finished.
func (r *Runner) runGeneration(stop context.Context, gen *kafka.Generation) {
	total := 0
	for _, as := range gen.Assignments {
		total += len(as)
	}
	restored := make(chan struct{}, total)
	finished := make(chan struct{})
	commits := &committer{gen: gen, log: r.log, pending: map[string]map[int]int64{}}
	gen.Start(func(genCtx context.Context) {
		defer close(finished)
		tickerDone := make(chan struct{})
		go commits.every(r.cfg.CommitInterval, tickerDone)
		var wg sync.WaitGroup
		for topic, assignments := range gen.Assignments {
			for _, a := range assignments {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.partition(genCtx, stop, commits, topic, a.ID, a.Offset, restored)
				}()
			}
		}
		wg.Wait()
		close(tickerDone)
		commits.flush() // the last batches of a graceful stop, while the generation is still ours
	})
	r.log.Info("partitions assigned", zap.Int32("generation", gen.ID), zap.Int("partitions", total))
	r.cfg.Observer.Generation(r.cfg.Name, total)
	go func() {
		for i := 0; i < total; i++ {
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

// committer commits the offsets of a generation's partitions in one request per interval, off the
// partitions' processing path. Workers mark an offset only after everything produced from the records
// before it was acknowledged; the broker refuses a commit from a generation that has ended, so a
// partition that moved to another member is never committed here.
type committer struct {
	gen     *kafka.Generation
	log     *zap.Logger
	sending sync.Mutex // one commit request at a time, so an older one never lands after a newer one
	mu      sync.Mutex
	pending map[string]map[int]int64
}

func (c *committer) mark(topic string, partition int, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[topic] == nil {
		c.pending[topic] = map[int]int64{}
	}
	c.pending[topic][partition] = next
}

// flush commits what is pending; on failure the offsets stay pending unless newer ones arrived.
func (c *committer) flush() {
	c.sending.Lock()
	defer c.sending.Unlock()
	c.mu.Lock()
	batch := c.pending
	c.pending = map[string]map[int]int64{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := c.gen.CommitOffsets(batch); err != nil {
		c.log.Warn("commit failed; the records will be processed again unless a later commit succeeds", zap.Error(err))
		c.mu.Lock()
		for topic, parts := range batch {
			for p, off := range parts {
				if _, newer := c.pending[topic][p]; !newer {
					if c.pending[topic] == nil {
						c.pending[topic] = map[int]int64{}
					}
					c.pending[topic][p] = off
				}
			}
		}
		c.mu.Unlock()
	}
}

func (c *committer) every(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			c.flush()
		}
	}
}

// partition processes one partition until its generation ends or the stage stops.
func (r *Runner) partition(genCtx, stop context.Context, commits *committer, topic string, partition int, offset int64, restored chan<- struct{}) {
	ctx, cancel := context.WithCancel(genCtx)
	defer cancel()
	go func() {
		select {
		case <-stop.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	log := r.log.With(zap.String("topic", topic), zap.Int("partition", partition))
	// Restoring state or opening the reader can fail while the broker is unavailable: retry until the
	// partition is revoked, rather than leave it assigned and unread.
	var handler Handler
	var reader *kafka.Reader
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		var err error
		if handler == nil {
			handler, err = r.cfg.NewHandler(ctx, topic, partition)
		}
		if err == nil {
			reader, err = r.kafka.PartitionReader(topic, partition, offset)
		}
		if err == nil {
			break
		}
		r.cfg.Ready(fmt.Errorf("start %s/%d: %w", topic, partition, err))
		log.Warn("cannot start partition; retrying", zap.Duration("in", backoff), zap.Error(err))
		if !sleep(ctx, backoff) {
			return
		}
	}
	restored <- struct{}{}
	defer func() {
		r.cfg.Observer.ReaderStats(r.cfg.Name, reader.Stats())
		_ = reader.Close()
		if c, ok := handler.(Closer); ok {
			c.Close()
		}
	}()

	lastTick := time.Now()
	batch := make([]stream.Record, 0, r.cfg.BatchSize)
	times := make([]time.Time, 0, r.cfg.BatchSize)
	for ctx.Err() == nil {
		batch = r.fetch(ctx, reader, batch[:0])
		began := time.Now()
		var outputs []stream.Output
		if len(batch) > 0 {
			r.cfg.Observer.Consumed(r.cfg.Name, topic, len(batch))
			outputs = handler.Process(batch)
		}
		if now := time.Now(); now.Sub(lastTick) >= r.cfg.CommitInterval {
			outputs = append(outputs, handler.Tick(now)...)
			r.cfg.Observer.ReaderStats(r.cfg.Name, reader.Stats())
			lastTick = now
		}
		// A batch in hand is finished even when the stage is stopping (SIGTERM drains); only losing the
		// partition (genCtx) abandons it, since its records are then someone else's.
		failed, err := r.write(genCtx, outputs, r.cfg.GiveUpAfter)
		if err != nil {
			return // the partition moved while the broker refused writes: nothing past the last commit is committed
		}
		if settler, ok := handler.(Settler); ok {
			if _, err := r.write(genCtx, settler.Settle(failed), 0); err != nil {
				return
			}
		}
		if len(batch) > 0 {
			// Everything produced from the batch is acknowledged: its offsets may be committed.
			commits.mark(topic, partition, batch[len(batch)-1].Offset+1)
			times = times[:0]
			for _, rec := range batch {
				times = append(times, rec.Time)
			}
			r.cfg.Observer.Batch(r.cfg.Name, time.Since(began), times)
		}
	}
}

// fetch returns up to BatchSize records: it waits up to CommitInterval for the first, then up to Linger
// for more.
func (r *Runner) fetch(ctx context.Context, reader *kafka.Reader, batch []stream.Record) []stream.Record {
	first, cancelFirst := context.WithTimeout(ctx, r.cfg.CommitInterval)
	defer cancelFirst()
	m, err := reader.FetchMessage(first)
	if err != nil {
		return batch
	}
	batch = append(batch, toRecord(m))
	more, cancelMore := context.WithTimeout(ctx, r.cfg.Linger)
	defer cancelMore()
	for len(batch) < r.cfg.BatchSize {
		m, err := reader.FetchMessage(more)
		if err != nil {
			break
		}
		batch = append(batch, toRecord(m))
	}
	return batch
}

// write produces outputs with acks=all. Records the broker refuses are retried with backoff (only
// those: acknowledged ones are not written twice) until all are acknowledged, ctx ends (an error), or
// giveUp > 0 has passed: then it returns the input offsets whose outputs were given up on.
func (r *Runner) write(ctx context.Context, outputs []stream.Output, giveUp time.Duration) (map[int64]error, error) {
	start := time.Now()
	backoff := 100 * time.Millisecond
	for len(outputs) > 0 {
		errs := r.writeOnce(ctx, outputs)
		var retry []stream.Output
		var last error
		for i, err := range errs {
			if err != nil {
				retry = append(retry, outputs[i])
				last = err
			}
		}
		r.countProduced(outputs, errs)
		if len(retry) == 0 {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if giveUp > 0 && time.Since(start) >= giveUp {
			failed := map[int64]error{}
			for i, err := range errs {
				if err != nil {
					failed[outputs[i].Source] = fmt.Errorf("write to %s: %w", outputs[i].Topic, err)
				}
			}
			r.log.Warn("giving up on writes", zap.Int("records", len(retry)), zap.Error(kafkaclient.Explain(last)))
			r.cfg.Observer.GaveUp(r.cfg.Name, len(retry))
			return failed, nil
		}
		r.cfg.Observer.Retried(r.cfg.Name, len(retry))
		r.log.Warn("write failed; retrying", zap.Int("records", len(retry)), zap.Error(kafkaclient.Explain(last)))
		if !sleep(ctx, backoff) {
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
		outputs = retry
	}
	return nil, nil
}

// countProduced reports acknowledged outputs by topic.
func (r *Runner) countProduced(outputs []stream.Output, errs []error) {
	n, topic := 0, ""
	for i, o := range outputs {
		if errs[i] != nil {
			continue
		}
		if o.Topic != topic && n > 0 {
			r.cfg.Observer.Produced(r.cfg.Name, topic, n)
			n = 0
		}
		topic = o.Topic
		n++
	}
	if n > 0 {
		r.cfg.Observer.Produced(r.cfg.Name, topic, n)
	}
}

// reportLag computes the group's lag (log-end offset minus committed offset) for every partition of its
// topics, every LagInterval. kafka-go does not report group lag, so it is asked of the broker.
func (r *Runner) reportLag(ctx context.Context, topics []string) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		if lags, err := GroupLag(ctx, r.kafka, r.cfg.GroupID, topics); err == nil {
			r.cfg.Observer.ForgetLag(r.cfg.GroupID)
			for _, l := range lags {
				r.cfg.Observer.Lag(r.cfg.GroupID, l.Topic, l.Partition, l.Lag)
			}
		} else if ctx.Err() == nil {
			r.log.Debug("lag not computed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PartitionLag is the lag of one partition for a group.
type PartitionLag struct {
	Topic     string
	Partition int
	Lag       int64
}

// GroupLag returns the lag of group on every partition of topics. A partition without a committed
// offset counts from its first offset (where the group will start).
func GroupLag(ctx context.Context, factory *kafkaclient.Factory, group string, topics []string) ([]PartitionLag, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := factory.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	parts := map[string][]int{}
	offsetReq := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			continue
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			offsetReq[t.Name] = append(offsetReq[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return nil, err
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: offsetReq})
	if err != nil {
		return nil, err
	}
	var out []PartitionLag
	for topic, ps := range ends.Topics {
		done := map[int]int64{}
		for _, c := range committed.Topics[topic] {
			done[c.Partition] = c.CommittedOffset
		}
		for _, p := range ps {
			if p.Error != nil {
				continue
			}
			at, ok := done[p.Partition]
			if !ok || at < 0 {
				at = p.FirstOffset
			}
			out = append(out, PartitionLag{Topic: topic, Partition: p.Partition, Lag: max(0, p.LastOffset-at)})
		}
	}
	return out, nil
}

// writeOnce writes outputs (keyed and explicit-partition ones concurrently) and returns one error per
// output, nil for each acknowledged one.
func (r *Runner) writeOnce(ctx context.Context, outputs []stream.Output) []error {
	var keyed, explicit []kafka.Message
	var keyedIdx, explicitIdx []int
	for i, o := range outputs {
		if o.Partition == stream.ByKey {
			keyed, keyedIdx = append(keyed, toMessage(o)), append(keyedIdx, i)
		} else {
			explicit, explicitIdx = append(explicit, toMessage(o)), append(explicitIdx, i)
		}
	}
	errs := make([]error, len(outputs))
	var wg sync.WaitGroup
	for _, part := range []struct {
		w    *kafka.Writer
		msgs []kafka.Message
		idx  []int
	}{{r.keyed, keyed, keyedIdx}, {r.explicit, explicit, explicitIdx}} {
		if len(part.msgs) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := part.w.WriteMessages(ctx, part.msgs...)
			var werrs kafka.WriteErrors
			for j, i := range part.idx {
				switch {
				case err == nil:
				case errors.As(err, &werrs) && len(werrs) == len(part.msgs):
					errs[i] = werrs[j]
				default:
					errs[i] = err
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

func toRecord(m kafka.Message) stream.Record {
	rec := stream.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
	if len(m.Headers) > 0 {
		rec.Headers = make([]stream.Header, len(m.Headers))
		for i, h := range m.Headers {
			rec.Headers[i] = stream.Header{Key: h.Key, Value: h.Value}
		}
	}
	return rec
}

func toMessage(o stream.Output) kafka.Message {
	m := kafka.Message{Topic: o.Topic, Partition: o.Partition, Key: o.Key, Value: o.Value, Time: o.Time}
	if len(o.Headers) > 0 {
		m.Headers = make([]kafka.Header, len(o.Headers))
		for i, h := range o.Headers {
			m.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return m
}

// sleep waits d or until ctx ends; it reports whether the full wait elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ReadAll reads a partition from its first offset up to the end it has when called, for restoring
// state; fn sees each record's key and value (nil for a tombstone).
func ReadAll(ctx context.Context, factory *kafkaclient.Factory, topic string, partition int, fn func(key, value []byte) error) (int, error) {
	client := factory.Client()
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	var first, end int64
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, p.Error)
			}
			first, end = p.FirstOffset, p.LastOffset
		}
	}
	if end <= first {
		return 0, nil
	}
	reader, err := factory.PartitionReader(topic, partition, first)
	if err != nil {
		return 0, err
	}
	defer reader.Close()
	n := 0
	for {
		m, err := reader.FetchMessage(ctx)
		if err != nil {
			return n, fmt.Errorf("read %s/%d: %w", topic, partition, err)
		}
		if err := fn(m.Key, m.Value); err != nil {
			return n, fmt.Errorf("restore %s/%d offset %d: %w", topic, partition, m.Offset, err)
		}
		n++
		if m.Offset+1 >= end {
			return n, nil
		}
	}
}

// TopicNames lists the cluster's topics.
func TopicNames(ctx context.Context, factory *kafkaclient.Factory) ([]string, error) {
	md, err := factory.Client().Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	names := make([]string, 0, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error == nil && !t.Internal {
			names = append(names, t.Name)
		}
	}
	return names, nil
}

package egress

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
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
	// Lag computes the group's lag every 10 s for the Runner observer (nil: not computed), so the
	// consumer-lag panel and alert cover webhook channels too.
	Lag      func(ctx context.Context, group string, topics []string) ([]stage.PartitionLag, error)
	Runner   stage.Observer // nil: nobody
	Observer Observer       // nil: nobody
	Ready    func(error)    // nil: nobody
}

// Channel consumes one webhook channel's topic and delivers it.
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
	if cfg.Ready == nil {
		cfg.Ready = func(error) {}
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	cfg.MaxInFlight = max(cfg.MaxInFlight, 1)
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 200 * time.Millisecond
	}
	if cfg.RevokeWait <= 0 {
		cfg.RevokeWait = 5 * time.Second
	}
	cfg.DeadLetters.Pipeline = stageName
	log = log.With(zap.String("stage", stageName), zap.String("channel", cfg.Channel))
	return &Channel{cfg: cfg, broker: broker, sink: sink, log: log, busy: newKeyBusy(),
		entry: &stage.EntryGuard{Stage: stageName, Observer: cfg.Runner, Log: log},
		del: &deliverer{channel: cfg.Channel, post: post, retry: cfg.Retry, slots: make(chan struct{}, cfg.Concurrency), limits: cfg.Limits,
			obs: cfg.Observer, now: time.Now, sleep: sleep},
		out: outcome{notifications: cfg.Notifications, deadLetters: cfg.DeadLetters, limits: cfg.Limits}}
}

// Run consumes until ctx ends, then records what was decided, commits and returns nil.
func (c *Channel) Run(ctx context.Context) error {
	c.cfg.Ready(fmt.Errorf("joining the consumer group of %s", c.cfg.Topic))
	backoff := stage.Rejoins
	for ctx.Err() == nil {
		if err := c.runGroup(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Ready(err)
			c.log.Warn("consumer group stopped; rejoining", zap.Error(err))
			backoff.Wait(ctx)
		}
	}
	return nil
}

func (c *Channel) runGroup(ctx context.Context) error {
	group, err := c.broker.Group(c.cfg.GroupID, []string{c.cfg.Topic})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", c.cfg.GroupID, err)
	}
	defer group.Close()
	if c.cfg.Lag != nil {
		lagCtx, stopLag := context.WithCancel(ctx)
		defer stopLag()
		go c.reportLag(lagCtx)
	}
	for ctx.Err() == nil {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.generation(ctx, gen)
	}
	return nil
}

// generation delivers the assigned partitions until the generation ends or the stage stops; as in the
// stage runtime, one function runs every partition so a stop drains them all before the last commit.
func (c *Channel) generation(stop context.Context, gen stage.Generation) {
	assignments := gen.Assignments()
	commits := newCommitter(gen, c.log)
	finished := make(chan struct{})
	var mu sync.Mutex
	live := map[stage.Assignment]*keyed{}
	positions := map[stage.Assignment]*atomic.Int64{}
	flush := func() {
		snap := map[string]map[int]stage.OffsetMeta{}
		mu.Lock()
		for a, k := range live {
			om, ok := k.commit()
			if pos := positions[a].Load(); pos >= 0 {
				om, ok = pastSettled(k, pos, om, ok)
			}
			if ok {
				if snap[a.Topic] == nil {
					snap[a.Topic] = map[int]stage.OffsetMeta{}
				}
				snap[a.Topic][a.Partition] = om
			}
		}
		mu.Unlock()
		commits.flush(snap)
	}
	gen.Start(func(genCtx context.Context) {
		defer close(finished)
		tickerDone := make(chan struct{})
		go func() {
			t := time.NewTicker(c.cfg.CommitInterval)
			defer t.Stop()
			for {
				select {
				case <-tickerDone:
					return
				case <-t.C:
					flush()
					mu.Lock()
					c.reportOldest(live)
					mu.Unlock()
				}
			}
		}()
		var wg sync.WaitGroup
		for _, a := range assignments {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := newKeyed(c.cfg.MaxInFlight)
				// One key holds at most its share of the POSTs in flight in full; its later records wait as
				// offset and key, re-read when their turn comes, so a failing customer's backlog leaves the
				// bound to the other customers of the partition.
				k.perKey = max(1, c.cfg.MaxInFlight/c.cfg.Concurrency)
				k.busy = c.busy
				// The egress as a whole holds at most half of the instance's memory budget, split over the
				// configured channels, so connectors that keep failing cannot stall a healthy channel or
				// the other pipelines that share the budget.
				if total := c.cfg.Budget.Total(); total > 0 {
					k.maxSize = max(1, total/2/int64(max(c.cfg.Channels, 1))/int64(len(assignments)))
				}
				pos := new(atomic.Int64)
				pos.Store(-1)
				mu.Lock()
				live[a], positions[a] = k, pos
				mu.Unlock()
				c.partition(genCtx, stop, a, k, pos)
			}()
		}
		c.cfg.Ready(nil)
		wg.Wait()
		close(tickerDone)
		flush() // the last outcomes of a graceful stop, while the generation is still ours
		c.cfg.Observer.OldestPending(c.cfg.Channel, 0)
	})
	c.cfg.Runner.Generation(stageName, len(assignments))
	c.log.Info("partitions assigned", zap.Int32("generation", gen.ID()), zap.Int("partitions", len(assignments)))
	<-finished
}

// reportLag reports the channel group's lag every 10 s, as the stage runtime does for its groups.
func (c *Channel) reportLag(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		if lags, err := c.cfg.Lag(ctx, c.cfg.GroupID, []string{c.cfg.Topic}); err == nil {
			c.cfg.Runner.ForgetLag(c.cfg.GroupID)
			for _, l := range lags {
				c.cfg.Runner.Lag(c.cfg.GroupID, l.Topic, l.Partition, l.Lag)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Channel) reportOldest(live map[stage.Assignment]*keyed) {
	var oldest time.Time
	for _, k := range live {
		if t, ok := k.oldest(); ok && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	age := time.Duration(0)
	if !oldest.IsZero() {
		age = max(0, time.Since(oldest))
	}
	c.cfg.Observer.OldestPending(c.cfg.Channel, age)
}

// positionEvery bounds how long a partition's fetch waits before the reader's position is taken again,
// so the offsets a read passes without a record (markers) get committed while nothing else arrives.
const positionEvery = time.Second

// pastSettled is what to commit for a partition whose reader stands at pos (every offset below it
// fetched and tracked, or no record: a transaction's marker, an aborted record): pos itself once
// everything tracked is settled, else the keyed scheduler's own commit om.
func pastSettled(k *keyed, pos int64, om stage.OffsetMeta, ok bool) (stage.OffsetMeta, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.offsets.InFlight() > 0 || (ok && om.Offset >= pos) {
		return om, ok
	}
	// An earlier owner's settled offsets above pos stay in the metadata, as the keyed commit keeps them.
	return stage.OffsetMeta{Offset: pos, Metadata: EncodeSettled(pos, k.settledAbove(pos))}, true
}

// partition fetches one partition into its keyed scheduler until the partition is lost or the stage
// stops; then POSTs already sent finish and the outcomes decided reach the broker, both within RevokeWait.
// pos is where the reader stands once what it returned is tracked (negative: not known).
func (c *Channel) partition(genCtx, stop context.Context, a stage.Assignment, k *keyed, pos *atomic.Int64) {
	ctx, cancel := context.WithCancel(genCtx)
	defer cancel()
	go func() {
		select {
		case <-stop.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	log := c.log.With(zap.String("topic", a.Topic), zap.Int("partition", a.Partition))
	reader, ok := c.open(ctx, log, a)
	if !ok {
		return
	}
	defer reader.Close()
	done := c.settledBefore(ctx, log, a)
	k.mu.Lock()
	k.prior = maps.Clone(done)
	k.mu.Unlock()

	writeCtx, stopWrites := stage.Revocable(ctx, c.cfg.RevokeWait)
	defer stopWrites()
	rec := newRecorder(c.sink, c.cfg.DeadLetters, log, c.cfg.Runner)
	go rec.run(writeCtx)
	k.deliver = func(ctx context.Context, r stream.Record) (Verdict, bool) {
		return c.del.deliverDraining(ctx, writeCtx, r)
	}
	k.record = func(r stream.Record, v Verdict, done func()) {
		outs := c.out.records(r, v)
		if v.Kind == Forwarded && len(outs) == 1 && outs[0].Topic != c.cfg.Notifications {
			// A wrapped notification over the size limit, dead-lettered instead: counted as the recorder
			// counts one the topic refuses.
			c.cfg.Runner.DeadLettered(stageName, r, []string{CodeNotificationRefused})
		}
		if len(outs) == 0 {
			done()
			return
		}
		// The recorder runs until every worker is gone or writeCtx ends, so this send is taken.
		select {
		case rec.jobs <- job{rec: r, outs: outs, done: done}:
		case <-writeCtx.Done(): // given up: the message stays unsettled and is delivered again
		}
	}
	fetched := map[int64]time.Time{} // fetch time of each record held, until it settles
	var fmu sync.Mutex
	k.settled = func(r stream.Record, v Verdict) {
		fmu.Lock()
		c.cfg.Budget.Give(int64(r.Size()))
		took := time.Since(fetched[r.Offset])
		delete(fetched, r.Offset)
		fmu.Unlock()
		c.cfg.Observer.Delivered(c.cfg.Channel, v.Kind.String(), took)
		if v.Kind == Rejected || v.Kind == Failed {
			code := CodeFailed
			if v.Kind == Rejected {
				code = CodeRejected
			}
			c.cfg.Runner.DeadLettered(stageName, r, []string{code})
			log.Warn("dead-lettered", zap.Int64("offset", r.Offset), zap.String("outcome", v.Kind.String()), zap.String("why", v.Why))
		}
	}
	k.load = func(ctx context.Context, stub stream.Record) (stream.Record, bool) {
		r, ok := c.reread(ctx, log, stub)
		if ok {
			c.cfg.Budget.Take(int64(r.Size())) // given back when it settles, or at the end if it does not
		}
		return r, ok
	}
	positioner, _ := reader.(stage.Positioner)
	// The reader is for this goroutine alone: its position is taken here, after what it returned was
	// tracked, and handed to the commits.
	position := func() {
		if positioner != nil {
			pos.Store(positioner.Position())
		}
	}
	failures := 0
	for ctx.Err() == nil {
		if !c.cfg.Budget.Wait(ctx) || !k.waitSpace(ctx) {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, positionEvery)
		r, err := reader.Fetch(fctx)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			position() // nothing arrived: what was passed may be markers only
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				c.cfg.Runner.FetchFailed(stageName)
				if failures++; failures%100 == 1 {
					log.Warn("fetch failed", zap.Error(err), zap.Int("failures", failures))
				}
				sleep(ctx, 100*time.Millisecond)
			}
			continue
		}
		c.cfg.Runner.Consumed(stageName, a.Topic, 1)
		if done[r.Offset] {
			delete(done, r.Offset)
			k.skip(r)
			position()
			continue
		}
		c.cfg.Budget.Take(int64(r.Size()))
		fmu.Lock()
		fetched[r.Offset] = time.Now()
		fmu.Unlock()
		if k.add(ctx, r) {
			c.cfg.Budget.Give(int64(r.Size())) // kept as a stub: re-read when its turn comes
		}
		position()
	}
	k.wait()
	unsettled := k.unsettled()
	close(rec.jobs)
	<-rec.finished
	// Records never settled give their bytes back: the next owner fetches them again.
	fmu.Lock()
	for _, r := range unsettled {
		if _, held := fetched[r.Offset]; held {
			c.cfg.Budget.Give(int64(r.Size()))
		}
	}
	fetched = nil
	fmu.Unlock()
}

// settledBefore is the offsets above the committed one that an earlier owner settled (the commit's
// metadata), when the broker can tell; they are not delivered again.
func (c *Channel) settledBefore(ctx context.Context, log *zap.Logger, a stage.Assignment) map[int64]bool {
	mf, ok := c.broker.(stage.MetadataFetcher)
	if !ok || a.Offset < 0 {
		return nil
	}
	om, err := mf.Committed(ctx, c.cfg.GroupID, a.Topic, a.Partition)
	if err != nil || om.Offset != a.Offset {
		log.Warn("settled offsets of the last owner unknown; they are delivered again", zap.Error(err))
		return nil
	}
	done := DecodeSettled(om.Offset, om.Metadata)
	if len(done) > 0 {
		log.Info("skipping messages settled before the restart", zap.Int("messages", len(done)))
	}
	return done
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

// open opens the partition's reader, retrying while the broker is unavailable.
func (c *Channel) open(ctx context.Context, log *zap.Logger, a stage.Assignment) (stage.Reader, bool) {
	backoff := stage.Rejoins
	for {
		r, err := c.broker.Reader(stageName, a.Topic, a.Partition, a.Offset)
		if err == nil {
			// A webhook channel's topic can be written by anyone with access, not only the outbound stage.
			return c.entry.Reader(r), true
		}
		c.cfg.Ready(fmt.Errorf("start %s/%d: %w", a.Topic, a.Partition, err))
		log.Warn("cannot open partition; retrying", zap.Error(err))
		if !backoff.Wait(ctx) {
			return nil, false
		}
	}
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

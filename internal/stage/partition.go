package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
)

// partition processes one partition until its generation ends or the stage stops.
func (r *Runner) partition(genCtx, stop context.Context, commits *committer, a Assignment, assigned int, restored chan<- struct{}) {
	ctx, cancel := context.WithCancel(genCtx)
	defer cancel()
	go func() {
		select {
		case <-stop.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	log := r.log.With(zap.String("topic", a.Topic), zap.Int("partition", a.Partition))
	if r.cfg.NewAsync != nil {
		r.async(ctx, log, a, assigned, commits, restored)
		return
	}
	var handler Handler
	reader, ok := r.start(ctx, log, a, func(ctx context.Context) (any, error) {
		h, err := r.cfg.NewHandler(ctx, a.Topic, a.Partition)
		handler = h
		return h, err
	})
	if !ok {
		return
	}
	restored <- struct{}{}
	abandoned := false // outputs of a processed batch were never acknowledged
	defer func() {
		_ = reader.Close()
		if a, ok := handler.(Abandoner); ok && abandoned {
			a.Abandoned()
		}
		if c, ok := handler.(Closer); ok {
			c.Close()
		}
	}()

	// Writes outlive a revocation by up to RevokeWait: a write already sent finishes (or is abandoned)
	// before the rebalance can hand the partition to its next owner.
	writeCtx, stopWrites := Revocable(genCtx, r.cfg.RevokeWait)
	defer stopWrites()

	ticker, _ := handler.(Ticker)
	offsets := NewOffsets()
	positioner, _ := reader.(Positioner)
	marked := a.Offset // the offset last marked for commit (the assignment's to begin with)
	fetchLog := newRateLimited(log, 10*time.Second)
	lastTick := time.Now()
	batch := make([]stream.Record, 0, r.cfg.BatchSize)
	times := make([]time.Time, 0, r.cfg.BatchSize)
	for ctx.Err() == nil {
		var held int64
		batch, held = r.fetch(ctx, reader, batch[:0], fetchLog)
		if genCtx.Err() != nil {
			// The generation ended while the batch was fetched (a reader returns what it had queued):
			// its records are the next generation's. Processed now, its outputs could only be abandoned,
			// and a handler told of that drops its state, so a partition the rebalance gives straight
			// back would restore it from the changelog for nothing.
			r.cfg.Budget.Give(held)
			return
		}
		began := time.Now()
		if len(batch) > 0 {
			r.steps.since(StepFetch, batch[0].Time)
		}
		waited, ended := r.steps.now(), false
		step := func(ctx context.Context, batch []stream.Record) bool {
			if len(batch) > 0 && r.cfg.Middleware != nil {
				r.steps.since(StepLock, waited)
			}
			if ended = genCtx.Err() != nil; ended { // ended while a middleware waited: as above
				return false
			}
			return r.step(genCtx, writeCtx, log, a.Topic, handler, ticker, batch, held, &lastTick, &abandoned)
		}
		if r.cfg.Middleware != nil {
			step = r.cfg.Middleware(handler, step)
		}
		if !step(ctx, batch) {
			if ended {
				r.cfg.Budget.Give(held)
			}
			return
		}
		for _, rec := range batch {
			offsets.Track(rec.Offset)
			offsets.Settle(rec.Offset)
		}
		next, settled := offsets.Committable()
		if !settled {
			next = a.Offset
		}
		// Past what was settled, the reader may have passed offsets that are no records (markers): with
		// nothing in flight they are as done as the records before them.
		if positioner != nil && offsets.InFlight() == 0 {
			pos := positioner.Position()
			if marked < 0 && !settled {
				// A start at the first (or last) offset, resolved by the reader before any record: where
				// it stands is where it began, nothing to commit yet. Once records were settled, the
				// position is past them and is not where the partition began: the reader may resolve
				// its start and return records in one fetch, so the first position seen can be after
				// the first batch, and taking it as the start would leave that batch uncommitted.
				marked = pos
			}
			next = max(next, pos)
		}
		if next > marked {
			commits.mark(a.Topic, a.Partition, OffsetMeta{Offset: next})
			marked = next
		}
		if len(batch) == 0 {
			continue
		}
		times = times[:0]
		for _, rec := range batch {
			times = append(times, rec.Time)
		}
		r.cfg.Observer.Batch(r.cfg.Name, time.Since(began), times)
	}
}

// step processes one batch (and the housekeeping due) and settles its outputs. It reports false when the
// partition was lost meanwhile; abandoned then says whether outputs were made and never written.
func (r *Runner) step(genCtx, writeCtx context.Context, log *zap.Logger, topic string, handler Handler, ticker Ticker, batch []stream.Record,
	held int64, lastTick *time.Time, abandoned *bool) bool {
	var results []stream.Result
	var decided time.Time
	if len(batch) > 0 {
		r.cfg.Observer.Consumed(r.cfg.Name, topic, len(batch))
		processing := r.steps.now()
		results = handler.Process(batch)
		decided = r.steps.since(StepDecide, processing)
		if len(results) != len(batch) {
			panic(fmt.Sprintf("stage %s: handler returned %d results for %d records", r.cfg.Name, len(results), len(batch)))
		}
		for _, res := range results {
			for _, o := range res.Outputs {
				held += int64(o.Size())
			}
		}
	}
	var ticks []stream.Output
	if now := time.Now(); ticker != nil && now.Sub(*lastTick) >= r.cfg.CommitInterval {
		ticks = ticker.Tick(now)
		*lastTick = now
	}
	r.cfg.Budget.Take(held - r.fetchedBytes(batch))
	// A batch in hand is finished even when the stage is stopping (SIGTERM drains); only losing the
	// partition (genCtx) abandons it, since its records are then someone else's: no write starts then.
	if genCtx.Err() != nil {
		r.cfg.Budget.Give(held)
		*abandoned = len(batch) > 0 || len(ticks) > 0
		return false
	}
	done := r.settle(genCtx, writeCtx, log, handler, batch, results, ticks, decided)
	r.cfg.Budget.Give(held)
	if !done {
		*abandoned = true
		return false // the partition moved while writes failed: nothing past the last commit is committed
	}
	return true
}

// start makes the partition's handler (restoring its state) and opens its reader. Both can fail while
// the broker is unavailable: retry until the partition is revoked, rather than leave it assigned and unread.
func (r *Runner) start(ctx context.Context, log *zap.Logger, a Assignment, newHandler func(context.Context) (any, error)) (Reader, bool) {
	var handler any
	backoff := Rejoins
	for {
		var err error
		if handler == nil {
			if handler, err = newHandler(ctx); err != nil {
				handler = nil
			}
		}
		if err == nil {
			var reader Reader
			if reader, err = r.broker.Reader(r.cfg.Name, a.Topic, a.Partition, a.Offset); err == nil {
				if r.cfg.Entry != nil && r.cfg.Entry(a.Topic) {
					reader = r.entry.Reader(reader)
				}
				return reader, true
			}
		}
		r.cfg.Ready(fmt.Errorf("start %s/%d: %w", a.Topic, a.Partition, err))
		log.Warn("cannot start partition; retrying", zap.Error(err))
		if !backoff.Wait(ctx) {
			if c, ok := handler.(Closer); ok {
				c.Close()
			}
			return nil, false
		}
	}
}

// fetch returns up to BatchSize records: it waits up to CommitInterval for the first, then up to Linger
// for more, and stops early while the memory budget is spent. held is the bytes taken from the budget.
func (r *Runner) fetch(ctx context.Context, reader Reader, batch []stream.Record, fetchLog *rateLimited) ([]stream.Record, int64) {
	if !r.cfg.Budget.Wait(ctx) {
		return batch, 0
	}
	first, cancelFirst := context.WithTimeout(ctx, r.cfg.CommitInterval)
	defer cancelFirst()
	var held int64
	rec, err := reader.Fetch(first)
	if err != nil {
		r.fetchFailed(ctx, first, err, fetchLog)
		return batch, 0
	}
	batch = append(batch, rec)
	held += int64(rec.Size())
	r.cfg.Budget.Take(int64(rec.Size()))
	more, cancelMore := context.WithTimeout(ctx, r.cfg.Linger)
	defer cancelMore()
	// One partition takes at most a quarter of the budget per batch, so a partition whose writes keep
	// failing cannot hold the whole budget and stall the others.
	share := r.cfg.Budget.Total() / 4
	for len(batch) < r.cfg.BatchSize && !r.cfg.Budget.Full() && (share <= 0 || held < share) {
		rec, err := reader.Fetch(more)
		if err != nil {
			r.fetchFailed(ctx, more, err, fetchLog)
			break
		}
		batch = append(batch, rec)
		held += int64(rec.Size())
		r.cfg.Budget.Take(int64(rec.Size()))
	}
	return batch, held
}

// fetchedBytes is what fetch already took from the budget for batch.
func (r *Runner) fetchedBytes(batch []stream.Record) int64 {
	var n int64
	for _, rec := range batch {
		n += int64(rec.Size())
	}
	return n
}

// fetchFailed logs (rate-limited) and counts a fetch error that is not a wait running out.
func (r *Runner) fetchFailed(ctx, wait context.Context, err error, log *rateLimited) {
	if ctx.Err() != nil || (wait.Err() != nil && errors.Is(err, wait.Err())) {
		return
	}
	r.cfg.Observer.FetchFailed(r.cfg.Name)
	log.Warn("fetch failed", zap.Error(err))
}

// Revocable returns a context for writes that ends wait after parent ends (or when stop is called), so a
// write already sent when a partition is revoked can finish before the next owner starts.
func Revocable(parent context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	go func() {
		select {
		case <-parent.Done():
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// rateLimited logs at most one line per interval, with the number of lines it held back.
type rateLimited struct {
	log      *zap.Logger
	interval time.Duration
	mu       sync.Mutex
	last     time.Time
	skipped  int
}

func newRateLimited(log *zap.Logger, interval time.Duration) *rateLimited {
	return &rateLimited{log: log, interval: interval}
}

func (l *rateLimited) Warn(msg string, fields ...zap.Field) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < l.interval {
		l.skipped++
		return
	}
	l.log.Warn(msg, append(fields, zap.Int("suppressed", l.skipped))...)
	l.last, l.skipped = time.Now(), 0
}

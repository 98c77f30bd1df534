package stage

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stream"
)

// Async is a handler whose inputs settle in any order: per-key parallelism with per-key order, Confluent
// Parallel Consumer's model (the webhook egress). The runner hands it each fetched input, writes each
// Result it reports (dead letters included) with acks=all, never giving up, and commits the highest
// offset below which every input is settled, with the inputs settled above it in the commit's metadata:
// a new owner skips those instead of handling them again.
type Async interface {
	// Admit waits until the handler takes another input; false when ctx ended.
	Admit(ctx context.Context) bool
	// Add takes one input; the handler calls settle once for it, from any goroutine, unless ctx ends
	// first. Add reports false when the handler keeps only the input's coordinates: the runner gives its
	// bytes back to the budget (the handler reads it again, and accounts for it, when its turn comes).
	Add(ctx context.Context, rec stream.Record, settle Settle) (held bool)
	// Wait returns once the handler calls settle no more (ctx of Add ended, or every input settled).
	Wait()
}

// Settle reports the Result of an Async input (rec: the input as the handler holds it). The runner
// writes the Result's records, then marks the input settled and calls written; a Result that is never
// written (the partition was lost first) leaves its input unsettled, so uncommitted.
type Settle func(rec stream.Record, res stream.Result, written func())

// AsyncPartition is what an Async handler is made for.
type AsyncPartition struct {
	Assignment
	// Assigned is how many partitions the generation gave this stage.
	Assigned int
	// Drain ends Config.RevokeWait after the partition is given up (revoked or stopping): work already
	// begun (a POST sent) may finish under it, and its Result is still written.
	Drain context.Context
}

// positionEvery bounds how long an asynchronous partition's fetch waits before the reader's position is
// taken again, so the offsets a read passes without a record (markers) get committed while nothing else
// arrives.
const positionEvery = time.Second

// maxSettles bounds the Results written in one write of an asynchronous partition.
const maxSettles = 256

// settled is one Result of an Async handler, to write.
type settled struct {
	rec     stream.Record
	res     stream.Result
	written func()
}

// async runs one partition of an Async stage until its generation ends or the stage stops; then work
// already begun finishes and the Results decided reach the broker, both within RevokeWait.
func (r *Runner) async(ctx context.Context, log *zap.Logger, a Assignment, assigned int, commits *committer, restored chan<- struct{}) {
	drain, stopDrain := Revocable(ctx, r.cfg.RevokeWait)
	defer stopDrain()
	var handler Async
	reader, ok := r.start(ctx, log, a, func(ctx context.Context) (any, error) {
		h, err := r.cfg.NewAsync(ctx, AsyncPartition{Assignment: a, Assigned: assigned, Drain: drain})
		handler = h
		return h, err
	})
	if !ok {
		return
	}
	restored <- struct{}{}
	defer func() {
		_ = reader.Close()
		if c, ok := handler.(Closer); ok {
			c.Close()
		}
	}()
	cp := newCheckpoint(r.settledBefore(ctx, log, a))
	skip := cp.prior
	cp.prior = maps.Clone(skip)
	commits.poll(a, cp) // until the generation's last commit, which follows this partition's last writes

	var mu sync.Mutex
	held := map[int64]int64{} // budget bytes of each input held, until it settles
	results := make(chan settled, maxSettles)
	release := func(offset int64) {
		mu.Lock()
		r.cfg.Budget.Give(held[offset])
		delete(held, offset)
		mu.Unlock()
	}
	writer := r.asyncWriter(log, cp, results, release)
	finished := make(chan struct{})
	go func() { defer close(finished); writer(drain) }()
	settle := func(rec stream.Record, res stream.Result, written func()) {
		if len(res.Outputs) == 0 && len(res.Reject) == 0 {
			cp.settle(rec.Offset) // nothing to write: settled now, not behind the writes in hand
			release(rec.Offset)
			written()
			return
		}
		select {
		case results <- settled{rec: rec, res: res, written: written}:
		case <-drain.Done(): // given up: the input stays unsettled and is handled again
		}
	}

	positioner, _ := reader.(Positioner)
	position := func() { // the reader is this goroutine's: its position is taken here, after tracking
		if positioner != nil {
			cp.setPosition(positioner.Position())
		}
	}
	fetchLog := newRateLimited(log, 10*time.Second)
	for ctx.Err() == nil {
		if !r.cfg.Budget.Wait(ctx) || !handler.Admit(ctx) {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, positionEvery)
		rec, err := reader.Fetch(fctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				r.fetchFailed(ctx, fctx, err, fetchLog)
				retry.Sleep(ctx, 100*time.Millisecond)
			}
			position() // nothing arrived: what was passed may be markers only
			continue
		}
		r.cfg.Observer.Consumed(r.cfg.Name, a.Topic, 1)
		if skip[rec.Offset] {
			delete(skip, rec.Offset)
			cp.skip(rec.Offset, rec.Time)
			position()
			continue
		}
		size := int64(rec.Size())
		r.cfg.Budget.Take(size)
		mu.Lock()
		held[rec.Offset] = size
		mu.Unlock()
		cp.track(rec.Offset, rec.Time)
		if !handler.Add(ctx, rec, settle) {
			mu.Lock()
			if _, ok := held[rec.Offset]; ok { // not settled already
				r.cfg.Budget.Give(size)
				held[rec.Offset] = 0
			}
			mu.Unlock()
		}
		position()
	}
	handler.Wait()
	close(results)
	<-finished
	// Inputs never settled give their bytes back: the next owner fetches them again.
	mu.Lock()
	for _, n := range held {
		r.cfg.Budget.Give(n)
	}
	held = nil
	mu.Unlock()
}

// asyncWriter returns the loop that writes an asynchronous partition's Results until results is closed
// and drained, or ctx ends: many Results per write, in the order they were decided, never given up on.
func (r *Runner) asyncWriter(log *zap.Logger, cp *checkpoint, results <-chan settled, release func(offset int64)) func(ctx context.Context) {
	return func(ctx context.Context) {
		for first := range results {
			batch := []settled{first}
		more:
			for len(batch) < maxSettles {
				select {
				case s, ok := <-results:
					if !ok {
						break more
					}
					batch = append(batch, s)
				default:
					break more
				}
			}
			w := &batchWrite{r: r, log: log, batch: make([]stream.Record, len(batch)), outcomes: make([]Outcome, len(batch)),
				dropped: map[int]bool{}, restamp: true}
			var work []outgoing
			for i, s := range batch {
				w.batch[i], w.outcomes[i].Record = s.rec, s.rec
				for _, o := range s.res.Outputs {
					work = append(work, outgoing{out: o, input: i})
				}
				if len(s.res.Reject) > 0 {
					work = append(work, w.deadLetterOf(i, s.res))
				}
			}
			if !w.write(ctx, ctx, work, false) {
				return
			}
			for _, s := range batch {
				cp.settle(s.rec.Offset)
				release(s.rec.Offset)
				s.written()
			}
		}
	}
}

// settledBefore is the offsets above the committed one that an earlier owner settled (the commit's
// metadata), when the broker can tell; they are not handled again.
func (r *Runner) settledBefore(ctx context.Context, log *zap.Logger, a Assignment) map[int64]bool {
	mf, ok := r.broker.(MetadataFetcher)
	if !ok || a.Offset < 0 {
		return nil
	}
	om, err := mf.Committed(ctx, r.cfg.GroupID, a.Topic, a.Partition)
	if err != nil || om.Offset != a.Offset {
		log.Warn("settled offsets of the last owner unknown; they are handled again", zap.Error(err))
		return nil
	}
	done := DecodeSettled(om.Offset, om.Metadata)
	if len(done) > 0 {
		log.Info("skipping inputs settled before the restart", zap.Int("records", len(done)))
	}
	return done
}

package stage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
)

// outgoing is one record to write and the input it belongs to.
type outgoing struct {
	out       stream.Output
	input     int  // index in the batch; -1 for housekeeping outputs (Tick)
	dead      bool // a dead letter: never given up on, shrunk when refused as too large
	giveUp    bool // may be given up on after Config.GiveUpAfter (a Settler's deliveries)
	restamped bool // refused for its timestamp once and restamped with the time of now
	// codes of a dead letter, and the record it carries: counted and logged once acknowledged, so a dead
	// letter the partition lost before it was written is counted by the owner that writes it, once.
	codes   []string
	carried stream.Record
}

// batchWrite settles one batch: it writes the records the handler made, dead letters for rejected
// inputs and for inputs whose output can never be written, then (for a Settler) the outcome records.
type batchWrite struct {
	r        *Runner
	log      *zap.Logger
	batch    []stream.Record
	outcomes []Outcome
	dropped  map[int]bool // inputs whose remaining outputs are no longer written
	// decided is when the handler returned, until the first write is sent (zero: not traced).
	decided time.Time
	// restamp: an output refused for its timestamp is written once more with the time of now before it
	// counts as refused (an Async stage's outputs carry their input's time, which a long retry ages).
	restamp bool
}

// settle writes everything made of batch; it returns false when the partition was lost (ctx ended)
// before every input was settled. decided is when Process returned (zero when steps are not traced).
func (r *Runner) settle(ctx, writeCtx context.Context, log *zap.Logger, h Handler, batch []stream.Record, results []stream.Result, ticks []stream.Output,
	decided time.Time) bool {
	settler, _ := h.(Settler)
	w := &batchWrite{r: r, log: log, batch: batch, outcomes: make([]Outcome, len(batch)), dropped: map[int]bool{}, decided: decided}
	var work []outgoing
	for i, rec := range batch {
		w.outcomes[i].Record = rec
		if len(results[i].Reject) > 0 {
			w.outcomes[i].Rejected = true
			work = append(work, w.deadLetter(i, results[i].Reject))
			continue
		}
		for _, o := range results[i].Outputs {
			work = append(work, outgoing{out: o, input: i, giveUp: settler != nil && r.cfg.GiveUpAfter > 0})
		}
	}
	for _, o := range ticks {
		work = append(work, outgoing{out: o, input: -1})
	}
	if !w.write(ctx, writeCtx, work, settler != nil) {
		return false
	}
	if settler == nil || len(batch) == 0 {
		return true
	}
	work = work[:0]
	settledResults := settler.Settle(w.outcomes)
	if len(settledResults) != len(batch) {
		panic(fmt.Sprintf("stage %s: Settle returned %d results for %d records", r.cfg.Name, len(settledResults), len(batch)))
	}
	for i, res := range settledResults {
		if len(res.Reject) > 0 {
			work = append(work, w.deadLetter(i, res.Reject))
		}
		for _, o := range res.Outputs {
			work = append(work, outgoing{out: o, input: i})
		}
	}
	w.dropped = map[int]bool{}
	return w.write(ctx, writeCtx, work, false)
}

// deadLetter is the dead-letter middleware: every stage's dead letters are built, counted and logged
// here, once each.
func (w *batchWrite) deadLetter(input int, vs stream.Violations) outgoing {
	return w.deadLetterOf(input, stream.Result{Reject: vs})
}

// deadLetterOf is the dead letter of res.Reject, carrying res.DeadLetterValue when it is set.
func (w *batchWrite) deadLetterOf(input int, res stream.Result) outgoing {
	rec, vs := w.batch[input], res.Reject
	if res.DeadLetterValue != nil {
		rec.Value = res.DeadLetterValue
	}
	return outgoing{out: w.r.cfg.DeadLetters.Build(rec, vs), input: input, dead: true, codes: vs.Codes(), carried: rec}
}

// deadLettered counts and logs a dead letter the broker acknowledged.
func (w *batchWrite) deadLettered(e outgoing) {
	rec := e.carried
	w.r.cfg.Observer.DeadLettered(w.r.cfg.Name, rec, e.codes)
	w.log.Warn("dead-lettered", zap.String("topic", rec.Topic), zap.Int("partition", rec.Partition),
		zap.Int64("offset", rec.Offset), zap.Strings("codes", e.codes))
}

// write writes work until every record is acknowledged, dropped (given up on, or replaced by a dead
// letter) or ctx ends (false). settled says whether failed inputs are reported to a Settler (true) or
// dead-lettered here (false).
//
// Retries keep per-partition order: the sink never acknowledges a record of a partition after an
// earlier one of the same call failed, and work keeps its order from one attempt to the next.
func (w *batchWrite) write(ctx, writeCtx context.Context, work []outgoing, settled bool) bool {
	start := time.Now()
	backoff := Retries
	outs := make([]stream.Output, 0, len(work))
	for len(work) > 0 {
		outs = outs[:0]
		for _, e := range work {
			outs = append(outs, e.out)
		}
		w.r.steps.since(StepProduce, w.decided)
		w.decided = time.Time{}
		sent := w.r.steps.now()
		errs := w.r.sink.Write(writeCtx, outs)
		w.r.steps.since(StepAck, sent)
		var retry []outgoing
		var last error
		for j, e := range work {
			err := errs[j]
			switch {
			case err == nil:
				w.r.cfg.Observer.Produced(w.r.cfg.Name, e.out.Topic, 1)
				if e.dead {
					w.deadLettered(e)
				}
			case Final(err) && e.dead:
				smaller, ok := deadletter.Shrink(e.out, w.batch[e.input])
				if errors.Is(err, ErrRefused) {
					// Refused for its timestamp or shape: a dead letter of now, with a key, is what any
					// dead-letter topic takes. Refused again, it waits like any failed write (a topic policy
					// refusing every dead letter must not make a loop of requests).
					smaller, ok = e.out, !e.restamped
					smaller.Time, e.restamped = time.Now(), true
					if smaller.Key == nil {
						smaller.Key = []byte{}
					}
				}
				if !ok && errors.Is(err, ErrRefused) {
					w.log.Error("the dead-letter topic refuses a dead letter of now with a key; check its policy",
						zap.String("topic", e.out.Topic), zap.Error(err))
					last = err
				} else if !ok {
					// Not even cimstream's headers fit: the dead-letter topic's limit is misconfigured. Keep
					// trying (nothing is lost; the partition waits for the operator).
					w.log.Error("the dead-letter topic refuses even a headers-only dead letter; raise its max.message.bytes",
						zap.String("topic", e.out.Topic), zap.Error(err))
					last = err
				}
				e.out = smaller
				retry = append(retry, e)
			case w.restamp && errors.Is(err, ErrRefused) && !e.dead && !e.restamped:
				e.out.Time, e.restamped = time.Now(), true
				last = err
				retry = append(retry, e)
			case Final(err) && e.input < 0:
				w.log.Error("housekeeping record too large; dropped", zap.String("topic", e.out.Topic), zap.Error(err))
			case Final(err):
				retry = w.fail(e, fmt.Errorf("write %d bytes to %s: %w", e.out.Size(), e.out.Topic, err), settled, retry)
			case e.giveUp && time.Since(start) >= w.r.cfg.GiveUpAfter:
				w.r.cfg.Observer.GaveUp(w.r.cfg.Name, 1)
				retry = w.fail(e, fmt.Errorf("write to %s: %w", e.out.Topic, err), settled, retry)
			default:
				last = err
				retry = append(retry, e)
			}
		}
		work = w.undropped(retry)
		if len(work) == 0 {
			return true
		}
		if ctx.Err() != nil {
			return false // the partition moved: its new owner writes these again
		}
		if last != nil {
			w.r.cfg.Observer.Retried(w.r.cfg.Name, len(work))
			w.log.Warn("write failed; retrying", zap.Int("records", len(work)), zap.Error(last))
			if !backoff.Wait(ctx) {
				return false
			}
		}
	}
	return true
}

// fail handles an output of input e.input that cannot be written. A Settler's input gives up its
// remaining outputs and learns why in its Outcome. Any other stage dead-letters the input (code too_large,
// refused or delivery_failed) and still writes its other outputs: the sessions stage's changelog record
// must land even when its CCM record cannot, or the state restored later would differ from the one
// that decided.
func (w *batchWrite) fail(e outgoing, err error, settled bool, retry []outgoing) []outgoing {
	if w.outcomes[e.input].Err != nil {
		return retry
	}
	w.outcomes[e.input].Err = err
	if settled {
		w.dropped[e.input] = true
		return retry
	}
	if w.r.cfg.Refused != nil {
		return append(retry, w.deadLetterOf(e.input, w.r.cfg.Refused(w.batch[e.input], e.out, err)))
	}
	code := CodeDeliveryFailed
	switch {
	case errors.Is(err, ErrTooLarge):
		code = CodeTooLarge
	case errors.Is(err, ErrRefused):
		code = CodeRefused
	}
	return append(retry, w.deadLetter(e.input, stream.Violations{{Code: code, Message: err.Error()}}))
}

// undropped removes the outputs of dropped inputs (their dead letters stay).
func (w *batchWrite) undropped(work []outgoing) []outgoing {
	if len(w.dropped) == 0 {
		return work
	}
	kept := work[:0]
	for _, e := range work {
		if e.dead || e.input < 0 || !w.dropped[e.input] {
			kept = append(kept, e)
		}
	}
	return kept
}

// Dead-letter codes of inputs whose output could not be written.
const (
	CodeDeliveryFailed = "delivery_failed" // given up on after the give-up time
	CodeRefused        = "refused"         // refused by the broker for good (not for its size)
	CodeTooLarge       = "too_large"       // refused for its size: the code of a message over the size limit
)

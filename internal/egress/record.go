package egress

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// job is the records that settle one message, and what to call once the broker acknowledged them.
type job struct {
	rec  stream.Record
	outs []stream.Output
	done func()
}

// recorder writes the outcome records of one partition with acks=all, many messages per produce request,
// in the order the messages were decided, and never gives up on them: an unwritten outcome leaves its
// message unsettled, so uncommitted.
type recorder struct {
	sink     stage.Sink
	dead     string // the dead-letter topic: its records are shrunk when refused as too large
	letters  deadletter.Builder
	log      *zap.Logger
	obs      stage.Observer
	jobs     chan job
	finished chan struct{}
}

// maxJobs bounds the messages recorded in one write.
const maxJobs = 256

func newRecorder(sink stage.Sink, letters deadletter.Builder, log *zap.Logger, obs stage.Observer) *recorder {
	return &recorder{sink: sink, dead: letters.Topic, letters: letters, log: log, obs: obs, jobs: make(chan job, maxJobs), finished: make(chan struct{})}
}

// run writes jobs until the channel is closed and drained, or ctx ends.
func (r *recorder) run(ctx context.Context) {
	defer close(r.finished)
	for first := range r.jobs {
		batch := []job{first}
	more:
		for len(batch) < maxJobs {
			select {
			case j, ok := <-r.jobs:
				if !ok {
					break more
				}
				batch = append(batch, j)
			default:
				break more
			}
		}
		if !r.write(ctx, batch) {
			return
		}
		for _, j := range batch {
			j.done()
		}
	}
}

type entry struct {
	out       stream.Output
	rec       stream.Record
	dead      bool
	restamped bool // a forwarded notification already restamped with the time of now
}

// write retries until every record of batch is acknowledged; false when ctx ended first. A retry sends
// only the records not acknowledged, in their order, and the sink never acknowledges a record of a
// partition after an earlier one failed, so each topic partition keeps the decision order.
func (r *recorder) write(ctx context.Context, batch []job) bool {
	var work []entry
	for _, j := range batch {
		for _, o := range j.outs {
			work = append(work, entry{out: o, rec: j.rec, dead: o.Topic == r.dead})
		}
	}
	backoff := stage.Retries
	outs := make([]stream.Output, 0, len(work))
	for len(work) > 0 {
		outs = outs[:0]
		for _, e := range work {
			outs = append(outs, e.out)
		}
		errs := r.sink.Write(ctx, outs)
		var retry []entry
		var last error
		for i, e := range work {
			err := errs[i]
			switch {
			case err == nil:
				r.obs.Produced(stageName, e.out.Topic, 1)
			case stage.Final(err) && e.dead:
				if errors.Is(err, stage.ErrRefused) {
					e.out.Time = time.Now() // refused for its timestamp: a dead letter of now is taken
				} else if smaller, ok := deadletter.Shrink(e.out, e.rec); ok {
					e.out = smaller
				}
				last = err
				retry = append(retry, e)
			case stage.Final(err) && errors.Is(err, stage.ErrRefused) && !e.restamped:
				// A connector's notification refused for its timestamp (the original record's, after a
				// long retry): the notification of now is taken, as a dead letter's is.
				e.out.Time, e.restamped = time.Now(), true
				last = err
				retry = append(retry, e)
			case stage.Final(err):
				// A connector's notification the topic refuses for good: a dead letter carrying it instead.
				r.log.Error("notification refused by the broker; dead-lettered", zap.String("topic", e.out.Topic),
					zap.Int64("offset", e.rec.Offset), zap.Error(err))
				note := e.rec
				note.Value = e.out.Value
				e = entry{out: r.letters.Build(note, cim.Violations{{Code: CodeNotificationRefused,
					Message: "the connector's DELIVERYNOTIFICATION was refused by " + e.out.Topic + ": " + err.Error()}}),
					rec: note, dead: true}
				r.obs.DeadLettered(stageName, note, []string{CodeNotificationRefused})
				last = err
				retry = append(retry, e)
			default:
				last = err
				retry = append(retry, e)
			}
		}
		work = retry
		if len(work) == 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.obs.Retried(stageName, len(work))
		r.log.Warn("outcome write failed; retrying", zap.Int("records", len(work)), zap.Error(last))
		if !backoff.Wait(ctx) {
			return false
		}
	}
	return true
}

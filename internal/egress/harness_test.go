package egress

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/kafkatest/fakekafka"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// The channel under test consumes topic "t" in group "g" and writes notifications to "notes", dead
// letters to "dead".
const (
	testTopic = "t"
	testGroup = "g"
)

// newBroker is a broker holding the channel's topic with partitions, and the topics it writes to.
func newBroker(partitions int) *fakekafka.Broker {
	b := fakekafka.New()
	b.CreateTopic(testTopic, partitions)
	b.CreateTopic("notes", 1)
	b.CreateTopic("dead", 1)
	return b
}

// message is a record of the channel's topic, written now.
func message(partition int, key, value string) stream.Output {
	return stream.Output{Topic: testTopic, Partition: partition, Key: []byte(key), Value: []byte(value), Time: time.Now()}
}

// produce writes outs as a producer does: each partition's records take its next offsets, in order.
func produce(t *testing.T, b *fakekafka.Broker, outs ...stream.Output) {
	t.Helper()
	for i, err := range b.Write(context.Background(), outs) {
		if err != nil {
			t.Fatalf("produce %q: %v", outs[i].Value, err)
		}
	}
}

// topicsOf lists the topics recs were written to.
func topicsOf(recs []stream.Record) []string {
	var topics []string
	for _, r := range recs {
		topics = append(topics, r.Topic)
	}
	return topics
}

// failing is a Fail hook that fails every record written to topic with err.
func failing(topic string, err error) func(int, stream.Output) error {
	return func(_ int, o stream.Output) error {
		if o.Topic == topic {
			return err
		}
		return nil
	}
}

// The errors a fake topic's writes fail with: refused for good (a topic policy), or to be retried.
var (
	errRefusedForGood = fmt.Errorf("policy violation: %w", stage.ErrRefused)
	errUnavailable    = kafka.LeaderNotAvailable
)

// committed is what the channel's group committed for partition 0.
func committed(b *fakekafka.Broker) stage.OffsetMeta {
	om, _ := b.Committed(context.Background(), testGroup, testTopic, 0)
	return om
}

// recordingPoster answers by a function and records every POST.
type recordingPoster struct {
	mu     sync.Mutex
	log    []stream.Record
	answer func(ctx context.Context, rec stream.Record) Attempt
}

func answering(answer func(ctx context.Context, rec stream.Record) Attempt) *recordingPoster {
	return &recordingPoster{answer: answer}
}

// accepting answers every POST 202.
func accepting() *recordingPoster {
	return answering(func(context.Context, stream.Record) Attempt { return Attempt{Status: http.StatusAccepted} })
}

func (p *recordingPoster) Post(ctx context.Context, rec stream.Record, _ int) Attempt {
	p.mu.Lock()
	p.log = append(p.log, rec)
	p.mu.Unlock()
	return p.answer(ctx, rec)
}

func (p *recordingPoster) posted() []stream.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stream.Record(nil), p.log...)
}

func (p *recordingPoster) offsets() []int64 {
	var out []int64
	for _, r := range p.posted() {
		out = append(out, r.Offset)
	}
	return out
}

func hang(ctx context.Context) Attempt { <-ctx.Done(); return Attempt{Err: ctx.Err()} }

// hangAtOffset0 hangs on the record at offset 0 and accepts every other.
func hangAtOffset0(ctx context.Context, r stream.Record) Attempt {
	if r.Offset == 0 {
		return hang(ctx)
	}
	return Attempt{Status: http.StatusAccepted}
}

// newTestChannel is a channel on b that retries a failed POST only after an hour.
func newTestChannel(b *fakekafka.Broker, post Poster, maxInFlight int) *Channel {
	c := NewChannel(Config{Channel: "c", Topic: testTopic, GroupID: testGroup, Notifications: "notes",
		Retry:       RetryPolicy{MinBackoff: time.Hour, MaxBackoff: time.Hour, Deadline: 10 * time.Hour},
		Concurrency: 8, MaxInFlight: maxInFlight, CommitInterval: 20 * time.Millisecond, RevokeWait: 100 * time.Millisecond},
		b, b, post, zap.NewNop())
	c.cfg.DeadLetters.Topic = "dead"
	return c
}

// start runs c, which joins its group and is given every partition; stop stops it as a shutdown does
// (its last commit accepted).
func start(c *Channel) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	return func() { cancel(); <-done }
}

// moveAway hands the channel's partitions to another member (a rebalance: the owner can commit no more)
// and then stops the owner that had them.
func moveAway(b *fakekafka.Broker, stop func()) {
	<-b.Rebalance(testGroup, fakekafka.None)
	stop()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deliverOnce runs one owner of b whose connector answers every POST 200 with body until offset 0 is
// committed, then stops it.
func deliverOnce(t *testing.T, b *fakekafka.Broker, body string) {
	t.Helper()
	p := answering(func(context.Context, stream.Record) Attempt {
		return Attempt{Status: http.StatusOK, Body: []byte(body)}
	})
	stop := start(newTestChannel(b, p, 10))
	defer stop()
	waitUntil(t, "committed 1", func() bool { return committed(b).Offset == 1 })
}

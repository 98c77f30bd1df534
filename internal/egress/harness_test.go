package egress

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// rvBroker is an in-memory broker: logs per topic/partition, committed offsets with metadata.
type rvBroker struct {
	mu        sync.Mutex
	logs      map[string]map[int][]stream.Record
	committed map[string]map[int]stage.OffsetMeta // by topic/partition (one group)
	gens      chan *rvGen
}

func newRvBroker() *rvBroker {
	return &rvBroker{logs: map[string]map[int][]stream.Record{}, committed: map[string]map[int]stage.OffsetMeta{}, gens: make(chan *rvGen, 10)}
}

func (b *rvBroker) add(topic string, p int, off int64, key, value string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logs[topic] == nil {
		b.logs[topic] = map[int][]stream.Record{}
	}
	b.logs[topic][p] = append(b.logs[topic][p], stream.Record{Topic: topic, Partition: p, Offset: off, Key: []byte(key), Value: []byte(value), Time: time.Now()})
}

func (b *rvBroker) commit(topic string, p int) (stage.OffsetMeta, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	om, ok := b.committed[topic][p]
	return om, ok
}

// startGen hands the channel a generation assigning partitions of topic at their committed offsets.
func (b *rvBroker) startGen(topic string, parts ...int) *rvGen {
	ctx, cancel := context.WithCancel(context.Background())
	g := &rvGen{b: b, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	for _, p := range parts {
		off := int64(-2)
		if om, ok := b.commit(topic, p); ok {
			off = om.Offset
		}
		g.assign = append(g.assign, stage.Assignment{Topic: topic, Partition: p, Offset: off})
	}
	b.gens <- g
	return g
}

func (b *rvBroker) Group(string, []string) (stage.Group, error) { return rvGroup{b}, nil }
func (b *rvBroker) Reader(_ string, topic string, p int, off int64) (stage.Reader, error) {
	return &rvReader{b: b, topic: topic, p: p, next: off}, nil
}
func (b *rvBroker) Committed(_ context.Context, _ string, topic string, p int) (stage.OffsetMeta, error) {
	if om, ok := b.commit(topic, p); ok {
		return om, nil
	}
	return stage.OffsetMeta{Offset: -1}, nil
}

type rvGroup struct{ b *rvBroker }

func (g rvGroup) Next(ctx context.Context) (stage.Generation, error) {
	select {
	case gen := <-g.b.gens:
		return gen, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (g rvGroup) Close() error { return nil }

type rvGen struct {
	b      *rvBroker
	assign []stage.Assignment
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	over   bool
}

func (g *rvGen) ID() int32                          { return 1 }
func (g *rvGen) Assignments() []stage.Assignment    { return g.assign }
func (g *rvGen) Start(fn func(ctx context.Context)) { go func() { defer close(g.done); fn(g.ctx) }() }
func (g *rvGen) Commit(map[string]map[int]int64) error {
	return errors.New("plain commit")
}
func (g *rvGen) CommitMetadata(o map[string]map[int]stage.OffsetMeta) error {
	g.mu.Lock()
	over := g.over
	g.mu.Unlock()
	if over {
		return errors.New("generation over")
	}
	g.b.mu.Lock()
	defer g.b.mu.Unlock()
	for t, ps := range o {
		if g.b.committed[t] == nil {
			g.b.committed[t] = map[int]stage.OffsetMeta{}
		}
		for p, om := range ps {
			g.b.committed[t][p] = om
		}
	}
	return nil
}

// end ends the generation (a rebalance) and waits until the member let go of it.
func (g *rvGen) end() {
	g.cancel()
	<-g.done
	g.mu.Lock()
	g.over = true
	g.mu.Unlock()
}

type rvReader struct {
	b     *rvBroker
	topic string
	p     int
	next  int64
}

func (r *rvReader) Fetch(ctx context.Context) (stream.Record, error) {
	for {
		r.b.mu.Lock()
		for _, rec := range r.b.logs[r.topic][r.p] {
			if rec.Offset >= r.next {
				r.next = rec.Offset + 1
				r.b.mu.Unlock()
				return rec, nil
			}
		}
		r.b.mu.Unlock()
		select {
		case <-ctx.Done():
			return stream.Record{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
func (r *rvReader) Close() error { return nil }

// rvSink acknowledges everything unless blocked.
type rvSink struct {
	mu      sync.Mutex
	block   bool
	written []stream.Output
}

func (s *rvSink) Write(ctx context.Context, outs []stream.Output) []error {
	errs := make([]error, len(outs))
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		for i := range errs {
			errs[i] = ctx.Err()
		}
		return errs
	}
	s.mu.Lock()
	s.written = append(s.written, outs...)
	s.mu.Unlock()
	return errs
}

// rvPoster answers by a function and logs every POST.
type rvPoster struct {
	mu     sync.Mutex
	log    []stream.Record
	answer func(ctx context.Context, rec stream.Record) Attempt
}

func (p *rvPoster) Post(ctx context.Context, rec stream.Record, _ int) Attempt {
	p.mu.Lock()
	p.log = append(p.log, rec)
	p.mu.Unlock()
	return p.answer(ctx, rec)
}

func (p *rvPoster) posted() []stream.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stream.Record(nil), p.log...)
}

func hang(ctx context.Context) Attempt { <-ctx.Done(); return Attempt{Err: ctx.Err()} }

func rvChannel(b *rvBroker, sink stage.Sink, post Poster, topic string, maxInFlight int, budget *stage.Budget) *Channel {
	return rvChannelOf(b, sink, post, topic, maxInFlight, budget, 1)
}

func rvChannelOf(b *rvBroker, sink stage.Sink, post Poster, topic string, maxInFlight int, budget *stage.Budget, channels int) *Channel {
	return NewChannel(Config{Channels: channels, Channel: "c", Topic: topic, GroupID: "g", Notifications: "notes",
		Retry:       RetryPolicy{MinBackoff: time.Hour, MaxBackoff: time.Hour, Deadline: 10 * time.Hour},
		Concurrency: 8, MaxInFlight: maxInFlight, CommitInterval: 20 * time.Millisecond, RevokeWait: 100 * time.Millisecond,
		Budget: budget}, b, sink, post, zap.NewNop())
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

func runOwner(b *rvBroker, c *Channel) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	return func() { cancel(); <-done }
}

func postedOffsets(p *rvPoster) []int64 {
	var out []int64
	for _, r := range p.posted() {
		out = append(out, r.Offset)
	}
	return out
}

// deliverOnce runs one owner of topic t partition 0 whose connector answers every POST 200 with body, with
// dead letters to "dead", until offset 0 is committed, then stops it.
func deliverOnce(t *testing.T, b *rvBroker, sink stage.Sink, body string) {
	t.Helper()
	p := &rvPoster{answer: func(context.Context, stream.Record) Attempt {
		return Attempt{Status: http.StatusOK, Body: []byte(body)}
	}}
	c := rvChannel(b, sink, p, "t", 10, nil)
	c.cfg.DeadLetters.Topic = "dead"
	stop := runOwner(b, c)
	g := b.startGen("t", 0)
	waitUntil(t, "committed 1", func() bool { om, _ := b.commit("t", 0); return om.Offset == 1 })
	g.end()
	stop()
}

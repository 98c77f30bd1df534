package stage

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// fakeSink acknowledges records unless fail says otherwise; it keeps what was acknowledged, in order.
type fakeSink struct {
	mu      sync.Mutex
	fail    func(attempt int, o stream.Output) error // nil: acknowledge
	block   chan struct{}                            // when set, Write waits for it to close
	entered chan struct{}                            // when set, told once per Write call
	written []stream.Output
	calls   int
}

func (s *fakeSink) Write(ctx context.Context, outs []stream.Output) []error {
	if s.entered != nil {
		s.entered <- struct{}{}
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			errs := make([]error, len(outs))
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	errs := make([]error, len(outs))
	failedKey := map[string]bool{} // keep the sink's order promise: nothing of a key after a failure
	for i, o := range outs {
		k := o.Topic + "/" + string(o.Key)
		if failedKey[k] {
			errs[i] = errors.New("not attempted")
			continue
		}
		if s.fail != nil {
			errs[i] = s.fail(s.calls, o)
		}
		if errs[i] != nil {
			if !errors.Is(errs[i], ErrTooLarge) {
				failedKey[k] = true
			}
			continue
		}
		s.written = append(s.written, o)
	}
	return errs
}

func (s *fakeSink) topics() map[string][]stream.Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]stream.Output{}
	for _, o := range s.written {
		out[o.Topic] = append(out[o.Topic], o)
	}
	return out
}

// fakeReader serves records, then waits.
type fakeReader struct {
	mu   sync.Mutex
	recs []stream.Record
}

func (r *fakeReader) Fetch(ctx context.Context) (stream.Record, error) {
	r.mu.Lock()
	if len(r.recs) > 0 {
		rec := r.recs[0]
		r.recs = r.recs[1:]
		r.mu.Unlock()
		return rec, nil
	}
	r.mu.Unlock()
	<-ctx.Done()
	return stream.Record{}, ctx.Err()
}

func (r *fakeReader) Close() error { return nil }

// fakeGeneration runs one generation of assignments; revoke ends it.
type fakeGeneration struct {
	assignments []Assignment
	ctx         context.Context
	revoke      context.CancelFunc
	wg          sync.WaitGroup
	mu          sync.Mutex
	commits     []map[string]map[int]int64
}

func newGeneration(as ...Assignment) *fakeGeneration {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeGeneration{assignments: as, ctx: ctx, revoke: cancel}
}

func (g *fakeGeneration) ID() int32                 { return 1 }
func (g *fakeGeneration) Assignments() []Assignment { return g.assignments }
func (g *fakeGeneration) Start(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() { defer g.wg.Done(); fn(g.ctx) }()
}
func (g *fakeGeneration) Commit(offsets map[string]map[int]int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return errors.New("generation ended")
	}
	g.commits = append(g.commits, offsets)
	return nil
}

// committed is the last offset committed for topic/partition, -1 when none.
func (g *fakeGeneration) committed(topic string, partition int) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	last := int64(-1)
	for _, c := range g.commits {
		if off, ok := c[topic][partition]; ok {
			last = off
		}
	}
	return last
}

// fakeBroker hands out one generation, then blocks until ctx ends.
type fakeBroker struct {
	gen     *fakeGeneration
	readers map[string]*fakeReader
	wrap    func(Reader) Reader // optional
	served  bool
	mu      sync.Mutex
}

func (b *fakeBroker) Group(string, []string) (Group, error) { return b, nil }
func (b *fakeBroker) Close() error                          { return nil }
func (b *fakeBroker) Next(ctx context.Context) (Generation, error) {
	b.mu.Lock()
	first := !b.served
	b.served = true
	b.mu.Unlock()
	if first {
		return b.gen, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}
func (b *fakeBroker) Reader(_, topic string, partition int, _ int64) (Reader, error) {
	if b.wrap != nil {
		return b.wrap(b.readers[topic]), nil
	}
	return b.readers[topic], nil
}

// handlerFunc adapts a function to Handler.
type handlerFunc func(batch []stream.Record) []stream.Result

func (f handlerFunc) Process(batch []stream.Record) []stream.Result { return f(batch) }

// eventually polls cond for up to 5 s.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

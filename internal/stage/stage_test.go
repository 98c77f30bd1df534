package stage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

func records(values ...string) []stream.Record {
	out := make([]stream.Record, len(values))
	for i, v := range values {
		key, _, _ := strings.Cut(v, ":")
		out[i] = stream.Record{Topic: "in", Partition: 0, Offset: int64(i), Key: []byte(key), Value: []byte(v)}
	}
	return out
}

// echo writes every record to "out", and rejects values starting with "bad".
var echo = handlerFunc(func(batch []stream.Record) []stream.Result {
	res := make([]stream.Result, len(batch))
	for i, r := range batch {
		if strings.Contains(string(r.Value), "bad") {
			res[i] = stream.Reject(cim.Violation{Code: cim.CodeRequired, Message: "bad input"})
			continue
		}
		res[i] = stream.Emit(stream.Output{Topic: "out", Partition: stream.ByKey, Key: r.Key, Value: r.Value})
	}
	return res
})

type run struct {
	gen    *fakeGeneration
	sink   *fakeSink
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs a stage over recs on partition in/0 with handler h.
func start(t *testing.T, h Handler, sink *fakeSink, recs []stream.Record, tweak func(*Config)) *run {
	t.Helper()
	gen := newGeneration(Assignment{Topic: "in", Partition: 0})
	broker := &fakeBroker{gen: gen, readers: map[string]*fakeReader{"in": {recs: recs}}}
	cfg := Config{
		Name: "test", Pipeline: "inbound", GroupID: "g",
		Topics:          func(context.Context) ([]string, error) { return []string{"in"}, nil },
		RefreshInterval: time.Hour,
		NewHandler:      func(context.Context, string, int) (Handler, error) { return h, nil },
		BatchSize:       3, Linger: time.Millisecond, CommitInterval: 20 * time.Millisecond,
		DeadLetters: deadletter.Builder{Topic: "dlq"},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{gen: gen, sink: sink, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); _ = New(cfg, broker, sink, zap.NewNop()).Run(ctx) }()
	t.Cleanup(func() { cancel(); gen.revoke(); <-r.done })
	return r
}

func values(outs []stream.Output) []string {
	var v []string
	for _, o := range outs {
		v = append(v, string(o.Value))
	}
	return v
}

func TestOffsetsCommitTheContiguousPrefix(t *testing.T) {
	o := NewOffsets()
	for _, off := range []int64{10, 11, 12, 13} {
		o.Track(off)
	}
	if _, ok := o.Committable(); ok {
		t.Fatal("nothing settled: nothing to commit")
	}
	o.Settle(12)
	o.Settle(13)
	if _, ok := o.Committable(); ok {
		t.Fatal("10 and 11 are in flight: nothing to commit yet")
	}
	if !o.Settle(10) {
		t.Fatal("settling the oldest moves the commit")
	}
	if next, _ := o.Committable(); next != 11 {
		t.Fatalf("commit %d, want 11", next)
	}
	o.Settle(11)
	if next, _ := o.Committable(); next != 14 || o.InFlight() != 0 {
		t.Fatalf("commit %d with %d in flight, want 14 and 0", next, o.InFlight())
	}
}

// TestTooLargeOutputIsDeadLetteredAndThePartitionFlows: one record whose output the sink refuses as too
// large becomes a too_large dead letter; the records after it on the partition are written and committed.
func TestTooLargeOutputIsDeadLetteredAndThePartitionFlows(t *testing.T) {
	sink := &fakeSink{fail: func(_ int, o stream.Output) error {
		if o.Topic == "out" && strings.Contains(string(o.Value), "big") {
			return fmt.Errorf("2 MiB: %w", ErrTooLarge)
		}
		return nil
	}}
	r := start(t, echo, sink, records("a:1", "b:big", "a:2", "c:3", "a:4", "b:5"), nil)
	if !eventually(func() bool { return r.gen.committed("in", 0) == 6 }) {
		t.Fatalf("committed %d, want 6", r.gen.committed("in", 0))
	}
	got := sink.topics()
	if v := values(got["out"]); strings.Join(v, ",") != "a:1,a:2,c:3,a:4,b:5" {
		t.Fatalf("out = %v", v)
	}
	if len(got["dlq"]) != 1 {
		t.Fatalf("want one dead letter, got %d", len(got["dlq"]))
	}
	h := stream.Record{Headers: got["dlq"][0].Headers}
	if codes, _ := h.Header(deadletter.HeaderCodes); string(codes) != cim.CodeTooLarge {
		t.Fatalf("dead letter codes %q", codes)
	}
	if off, _ := h.Header(stream.HeaderSourceOffset); string(off) != "1" {
		t.Fatalf("dead letter names offset %q, want 1", off)
	}
}

// TestRefusedDeadLetterIsShrunk: a dead letter the sink refuses as too large is written without its
// value rather than retried forever or lost.
func TestRefusedDeadLetterIsShrunk(t *testing.T) {
	sink := &fakeSink{fail: func(_ int, o stream.Output) error {
		if o.Topic == "dlq" && len(o.Value) > 0 {
			return ErrTooLarge
		}
		return nil
	}}
	r := start(t, echo, sink, records("a:1", "a:bad", "a:3"), nil)
	if !eventually(func() bool { return r.gen.committed("in", 0) == 3 }) {
		t.Fatalf("committed %d, want 3", r.gen.committed("in", 0))
	}
	dl := sink.topics()["dlq"]
	if len(dl) != 1 || len(dl[0].Value) != 0 {
		t.Fatalf("want one headers-only dead letter, got %+v", dl)
	}
	if size, _ := (stream.Record{Headers: dl[0].Headers}).Header(deadletter.HeaderOriginalSize); string(size) != "5" {
		t.Fatalf("original size %q, want 5", size)
	}
}

// TestDeadLetterIsNeverGivenUp: while the dead-letter topic refuses writes, the rejected input and
// everything after it stays uncommitted (even with a give-up time set); once it recovers, the dead letter
// is written and the offsets move on.
func TestDeadLetterIsNeverGivenUp(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	sink := &fakeSink{fail: func(_ int, o stream.Output) error {
		if o.Topic == "dlq" && down.Load() {
			return errors.New("[3] Unknown Topic Or Partition")
		}
		return nil
	}}
	r := start(t, echo, sink, records("a:1", "b:bad", "c:3", "d:4"), func(c *Config) {
		c.BatchSize = 1
		c.GiveUpAfter = 50 * time.Millisecond
	})
	if !eventually(func() bool { return r.gen.committed("in", 0) == 1 }) {
		t.Fatalf("the record before the rejected one is committed: got %d", r.gen.committed("in", 0))
	}
	time.Sleep(500 * time.Millisecond) // ten times the give-up time
	if got := r.gen.committed("in", 0); got != 1 {
		t.Fatalf("committed %d while the dead letter was not written, want 1", got)
	}
	if out := values(sink.topics()["out"]); len(out) != 1 {
		t.Fatalf("nothing after the rejected record may be written first (order): %v", out)
	}
	down.Store(false)
	if !eventually(func() bool { return r.gen.committed("in", 0) == 4 }) {
		t.Fatalf("committed %d after recovery, want 4", r.gen.committed("in", 0))
	}
	if dl := sink.topics()["dlq"]; len(dl) != 1 || string(dl[0].Value) != "b:bad" {
		t.Fatalf("want the one dead letter with the original value, got %v", values(dl))
	}
}

// TestRetriesKeepOrderPerKey: a write that fails once for one record is retried with everything of its
// key after it, so the key's records land in input order.
func TestRetriesKeepOrderPerKey(t *testing.T) {
	sink := &fakeSink{fail: func(attempt int, o stream.Output) error {
		if attempt == 1 && string(o.Value) == "a:2" {
			return errors.New("NOT_LEADER_FOR_PARTITION")
		}
		return nil
	}}
	r := start(t, echo, sink, records("a:1", "a:2", "b:1", "a:3", "b:2"), func(c *Config) { c.BatchSize = 5 })
	if !eventually(func() bool { return r.gen.committed("in", 0) == 5 }) {
		t.Fatalf("committed %d, want 5", r.gen.committed("in", 0))
	}
	var a []string
	for _, o := range sink.topics()["out"] {
		if string(o.Key) == "a" {
			a = append(a, string(o.Value))
		}
	}
	if strings.Join(a, ",") != "a:1,a:2,a:3" {
		t.Fatalf("key a written as %v", a)
	}
}

// settling is a Settler: it routes "gone:" values to a topic that never accepts writes, and reports
// each outcome as a notification, or as a dead letter when the write was given up on.
type settling struct{ outcomes [][]Outcome }

func (s *settling) Process(batch []stream.Record) []stream.Result {
	res := make([]stream.Result, len(batch))
	for i, r := range batch {
		topic := "out"
		if strings.Contains(string(r.Value), "gone") {
			topic = "gone"
		}
		res[i] = stream.Emit(stream.Output{Topic: topic, Partition: stream.ByKey, Key: r.Key, Value: r.Value})
	}
	return res
}

func (s *settling) Settle(outcomes []Outcome) []stream.Result {
	s.outcomes = append(s.outcomes, outcomes)
	res := make([]stream.Result, len(outcomes))
	for i, o := range outcomes {
		if o.Err != nil {
			res[i].Reject = cim.Violations{{Code: CodeDeliveryFailed, Message: o.Err.Error()}}
		}
		res[i].Outputs = []stream.Output{{Topic: "notes", Partition: stream.ByKey, Value: fmt.Appendf(nil, "%s failed=%t", o.Record.Value, o.Err != nil)}}
	}
	return res
}

// TestSettlerLearnsWhichInputFailed: one destination that never accepts writes fails only its own
// input (after the give-up time); the other input of the batch is delivered, and both are reported.
func TestSettlerLearnsWhichInputFailed(t *testing.T) {
	sink := &fakeSink{fail: func(_ int, o stream.Output) error {
		if o.Topic == "gone" {
			return errors.New("[3] Unknown Topic Or Partition")
		}
		return nil
	}}
	h := &settling{}
	r := start(t, h, sink, records("a:gone", "b:fine"), func(c *Config) { c.GiveUpAfter = 100 * time.Millisecond })
	if !eventually(func() bool { return r.gen.committed("in", 0) == 2 }) {
		t.Fatalf("committed %d, want 2", r.gen.committed("in", 0))
	}
	got := sink.topics()
	if v := values(got["notes"]); strings.Join(v, ",") != "a:gone failed=true,b:fine failed=false" {
		t.Fatalf("notes = %v", v)
	}
	if v := values(got["out"]); strings.Join(v, ",") != "b:fine" {
		t.Fatalf("out = %v", v)
	}
	if len(got["dlq"]) != 1 {
		t.Fatalf("want the failed input dead-lettered once, got %d", len(got["dlq"]))
	}
}

// TestRevokedPartitionWaitsForItsWrite: a partition revoked while its write is in flight does not end
// its generation before the write finished (so the write cannot land after the next owner started),
// and commits nothing.
func TestRevokedPartitionWaitsForItsWrite(t *testing.T) {
	sink := &fakeSink{block: make(chan struct{}), entered: make(chan struct{}, 10)}
	r := start(t, echo, sink, records("a:1"), func(c *Config) { c.RevokeWait = 5 * time.Second })
	select {
	case <-sink.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no write started")
	}
	r.gen.revoke()
	ended := make(chan struct{})
	go func() { r.gen.wg.Wait(); close(ended) }()
	select {
	case <-ended:
		t.Fatal("the generation ended while its write was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(sink.block)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the generation did not end once the write finished")
	}
	if got := r.gen.committed("in", 0); got != -1 {
		t.Fatalf("a revoked partition committed %d", got)
	}
}

// TestRevokedPartitionGivesUpAfterRevokeWait: a write that never finishes holds a revoked partition
// for RevokeWait at most.
func TestRevokedPartitionGivesUpAfterRevokeWait(t *testing.T) {
	sink := &fakeSink{block: make(chan struct{}), entered: make(chan struct{}, 10)}
	defer close(sink.block)
	r := start(t, echo, sink, records("a:1"), func(c *Config) { c.RevokeWait = 150 * time.Millisecond })
	<-sink.entered
	began := time.Now()
	r.gen.revoke()
	r.gen.wg.Wait()
	if took := time.Since(began); took < 150*time.Millisecond || took > 3*time.Second {
		t.Fatalf("revoked partition returned after %v, want about RevokeWait (150ms)", took)
	}
}

// TestBudgetBoundsHeldBytes: with a budget of three records, the bytes held never exceed the budget by
// more than one record plus one batch's outputs, and every record still gets through.
func TestBudgetBoundsHeldBytes(t *testing.T) {
	const size = 1000
	budget := NewBudget(3 * size)
	var peak atomic.Int64
	sink := &fakeSink{fail: func(int, stream.Output) error {
		if u := budget.Used(); u > peak.Load() {
			peak.Store(u)
		}
		return nil
	}}
	var vals []string
	for i := range 40 {
		vals = append(vals, fmt.Sprintf("k%d:%s", i%4, strings.Repeat("x", size-4)))
	}
	r := start(t, echo, sink, records(vals...), func(c *Config) { c.Budget = budget; c.BatchSize = 10 })
	if !eventually(func() bool { return r.gen.committed("in", 0) == 40 }) {
		t.Fatalf("committed %d, want 40", r.gen.committed("in", 0))
	}
	// Batches stop at the budget: at most 3 records fetched, plus one over, plus their outputs.
	if p := peak.Load(); p > 2*(3+1)*(size+10) {
		t.Fatalf("peak held %d bytes, budget %d", p, 3*size)
	}
	if budget.Used() != 0 {
		t.Fatalf("%d bytes still held after everything settled", budget.Used())
	}
}

func TestBudgetWaitsForBytesGivenBack(t *testing.T) {
	b := NewBudget(100)
	b.Take(100)
	if !b.Full() {
		t.Fatal("a spent budget is full")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait returned while the budget was spent")
	}
	go func() { time.Sleep(20 * time.Millisecond); b.Give(1) }()
	if !b.Wait(context.Background()) {
		t.Fatal("Wait did not return when bytes were given back")
	}
	var unlimited *Budget
	if unlimited.Full() || !unlimited.Wait(context.Background()) {
		t.Fatal("a nil budget never blocks")
	}
}

// twoOutputs writes every record to "ccm" and a state record to "changelog", as the sessions stage does.
var twoOutputs = handlerFunc(func(batch []stream.Record) []stream.Result {
	res := make([]stream.Result, len(batch))
	for i, r := range batch {
		res[i] = stream.Emit(stream.Output{Topic: "ccm", Partition: stream.ByKey, Key: r.Key, Value: r.Value},
			stream.Output{Topic: "changelog", Partition: 0, Key: r.Key, Value: []byte("state of " + string(r.Value))})
	}
	return res
})

// TestStateIsWrittenWhenItsOutputIsDeadLettered: when an input's CCM record is refused as too large, its
// changelog record is still written (the session table applied it), beside the too_large dead letter.
func TestStateIsWrittenWhenItsOutputIsDeadLettered(t *testing.T) {
	sink := &fakeSink{fail: func(_ int, o stream.Output) error {
		if o.Topic == "ccm" && strings.Contains(string(o.Value), "big") {
			return ErrTooLarge
		}
		return nil
	}}
	r := start(t, twoOutputs, sink, records("a:1", "a:big", "a:3"), nil)
	if !eventually(func() bool { return r.gen.committed("in", 0) == 3 }) {
		t.Fatalf("committed %d, want 3", r.gen.committed("in", 0))
	}
	got := sink.topics()
	if v := strings.Join(values(got["changelog"]), ","); v != "state of a:1,state of a:big,state of a:3" {
		t.Fatalf("changelog = %s", v)
	}
	if v := strings.Join(values(got["ccm"]), ","); v != "a:1,a:3" || len(got["dlq"]) != 1 {
		t.Fatalf("ccm = %s, %d dead letters", v, len(got["dlq"]))
	}
}

// TestRefusedRecordIsDeadLetteredAndItsDeadLetterRestamped: a record the broker refuses for good (an
// invalid timestamp for the topic) becomes a dead letter with code refused; a dead letter refused the
// same way is written again stamped now, rather than retried forever.
func TestRefusedRecordIsDeadLetteredAndItsDeadLetterRestamped(t *testing.T) {
	old := time.UnixMilli(1000)
	sink := &fakeSink{fail: func(_ int, o stream.Output) error {
		if o.Time.Equal(old) {
			return fmt.Errorf("[32] Invalid Timestamp: %w", ErrRefused)
		}
		return nil
	}}
	recs := records("a:1", "a:2")
	recs[0].Time = old
	oldEcho := handlerFunc(func(batch []stream.Record) []stream.Result {
		res := echo.Process(batch)
		for i := range res {
			for j := range res[i].Outputs {
				res[i].Outputs[j].Time = batch[i].Time
			}
		}
		return res
	})
	r := start(t, oldEcho, sink, recs, nil)
	if !eventually(func() bool { return r.gen.committed("in", 0) == 2 }) {
		t.Fatalf("committed %d, want 2", r.gen.committed("in", 0))
	}
	got := sink.topics()
	if v := values(got["out"]); strings.Join(v, ",") != "a:2" {
		t.Fatalf("out = %v", v)
	}
	if len(got["dlq"]) != 1 {
		t.Fatalf("want one dead letter, got %d", len(got["dlq"]))
	}
	if codes, _ := (stream.Record{Headers: got["dlq"][0].Headers}).Header(deadletter.HeaderCodes); string(codes) != CodeRefused {
		t.Fatalf("codes %q", codes)
	}
}

// TestOnePartitionTakesAQuarterOfTheBudget: batches stop at a quarter of the budget, so one partition
// whose writes keep failing cannot hold all of it.
func TestOnePartitionTakesAQuarterOfTheBudget(t *testing.T) {
	var largest atomic.Int64
	h := handlerFunc(func(batch []stream.Record) []stream.Result {
		var n int64
		for _, r := range batch {
			n += int64(r.Size())
		}
		if n > largest.Load() {
			largest.Store(n)
		}
		return echo.Process(batch)
	})
	var vals []string
	for i := range 20 {
		vals = append(vals, fmt.Sprintf("k:%03d%s", i, strings.Repeat("x", 95)))
	}
	r := start(t, h, &fakeSink{}, records(vals...), func(c *Config) { c.Budget = NewBudget(1000); c.BatchSize = 20 })
	if !eventually(func() bool { return r.gen.committed("in", 0) == 20 }) {
		t.Fatalf("committed %d, want 20", r.gen.committed("in", 0))
	}
	if l := largest.Load(); l > 250+101 {
		t.Fatalf("largest batch %d bytes, want at most a quarter of the 1000-byte budget plus one record", l)
	}
}

// failingReader fails every fetch with a broker error (not a wait running out).
type failingReader struct{ calls atomic.Int64 }

func (r *failingReader) Fetch(ctx context.Context) (stream.Record, error) {
	r.calls.Add(1)
	select {
	case <-ctx.Done():
		return stream.Record{}, ctx.Err()
	case <-time.After(5 * time.Millisecond):
	}
	return stream.Record{}, errors.New("[6] Not Leader For Partition")
}
func (r *failingReader) Close() error { return nil }

type fetchCounter struct {
	NopObserver
	failed atomic.Int64
}

func (c *fetchCounter) FetchFailed(string) { c.failed.Add(1) }

type failingBroker struct {
	fakeBroker
	reader *failingReader
}

func (b *failingBroker) Reader(string, string, int, int64) (Reader, error) { return b.reader, nil }
func (b *failingBroker) Group(string, []string) (Group, error)             { return b, nil }

// TestFetchErrorsAreCounted: fetch errors other than an empty wait are counted (and logged, rate-limited),
// never swallowed; waits that run out are not counted.
func TestFetchErrorsAreCounted(t *testing.T) {
	gen := newGeneration(Assignment{Topic: "in", Partition: 0})
	broker := &failingBroker{fakeBroker: fakeBroker{gen: gen}, reader: &failingReader{}}
	obs := &fetchCounter{}
	cfg := Config{Name: "test", GroupID: "g", Topics: func(context.Context) ([]string, error) { return []string{"in"}, nil },
		RefreshInterval: time.Hour, NewHandler: func(context.Context, string, int) (Handler, error) { return echo, nil },
		BatchSize: 1, Linger: time.Millisecond, CommitInterval: 20 * time.Millisecond, Observer: obs}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = New(cfg, broker, &fakeSink{}, zap.NewNop()).Run(ctx) }()
	defer func() { cancel(); gen.revoke(); <-done }()
	if !eventually(func() bool { return obs.failed.Load() >= 3 }) {
		t.Fatalf("%d fetch failures counted after %d fetches", obs.failed.Load(), broker.reader.calls.Load())
	}
}

// closeWatch is the echo handler that records whether it was told its outputs were abandoned.
type closeWatch struct {
	handlerFunc
	abandoned, closed atomic.Bool
}

func (c *closeWatch) Abandoned() { c.abandoned.Store(true) }
func (c *closeWatch) Close()     { c.closed.Store(true) }

// A partition revoked after its writes were acknowledged closes clean; one revoked while a write was
// failing is told its outputs were abandoned, before Close, so its state does not outlive it.
func TestHandlerIsToldOfAbandonedOutputs(t *testing.T) {
	clean := &closeWatch{handlerFunc: echo}
	r := start(t, clean, &fakeSink{}, records("a:1", "b:2"), nil)
	if !eventually(func() bool { return len(r.sink.topics()["out"]) == 2 }) {
		t.Fatal("outputs not written")
	}
	r.gen.revoke()
	if !eventually(clean.closed.Load) || clean.abandoned.Load() {
		t.Fatalf("clean revoke: closed=%v abandoned=%v", clean.closed.Load(), clean.abandoned.Load())
	}

	failing := &closeWatch{handlerFunc: echo}
	sink := &fakeSink{fail: func(int, stream.Output) error { return errors.New("broker unavailable") }}
	r = start(t, failing, sink, records("a:1"), func(c *Config) { c.RevokeWait = 10 * time.Millisecond })
	if !eventually(func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.calls > 0 }) {
		t.Fatal("no write attempted")
	}
	r.gen.revoke()
	if !eventually(failing.closed.Load) || !failing.abandoned.Load() {
		t.Fatalf("revoke with a write failing: closed=%v abandoned=%v", failing.closed.Load(), failing.abandoned.Load())
	}
}

// lockedHandler is a handler of one topic: Process logs "P <topic> <offset>" and emits the record to
// "out"; the handlers of a test share a lock (lockAround).
type lockedHandler struct {
	log   *eventLog
	topic string
}

// lockAround is a Middleware holding mu across every batch's step, as the inbound fast path does.
func lockAround(mu *sync.Mutex) Middleware {
	return func(_ Handler, next Step) Step {
		return func(ctx context.Context, batch []stream.Record) bool {
			mu.Lock()
			defer mu.Unlock()
			return next(ctx, batch)
		}
	}
}

func (h lockedHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	for i, rec := range batch {
		h.log.add(fmt.Sprintf("P %s %d", h.topic, rec.Offset))
		out[i] = stream.Emit(stream.Output{Topic: "out", Partition: 0, Value: []byte(fmt.Sprintf("%s %d", h.topic, rec.Offset))})
	}
	return out
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) { l.mu.Lock(); l.events = append(l.events, e); l.mu.Unlock() }
func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// loggingSink logs "W <value>" for each record it acknowledges, after a delay that leaves room for the
// other partition's worker to run.
type loggingSink struct{ log *eventLog }

func (s loggingSink) Write(_ context.Context, outs []stream.Output) []error {
	time.Sleep(2 * time.Millisecond)
	for _, o := range outs {
		s.log.add("W " + string(o.Value))
	}
	return make([]error, len(outs))
}

// Handlers sharing a lock (a Middleware) have their outputs written in the order their inputs were
// processed: a batch's outputs are acknowledged before another handler of the lock processes anything.
func TestSerializedHandlersWriteInProcessOrder(t *testing.T) {
	gen := newGeneration(Assignment{Topic: "a", Partition: 0}, Assignment{Topic: "b", Partition: 0})
	var recsA, recsB []stream.Record
	for i := range 30 {
		recsA = append(recsA, stream.Record{Topic: "a", Offset: int64(i), Value: []byte("x")})
		recsB = append(recsB, stream.Record{Topic: "b", Offset: int64(i), Value: []byte("x")})
	}
	broker := &fakeBroker{gen: gen, readers: map[string]*fakeReader{"a": {recs: recsA}, "b": {recs: recsB}}}
	log := &eventLog{}
	var mu sync.Mutex
	cfg := Config{Name: "test", GroupID: "g", Topics: func(context.Context) ([]string, error) { return []string{"a", "b"}, nil },
		RefreshInterval: time.Hour,
		NewHandler: func(_ context.Context, topic string, _ int) (Handler, error) {
			return lockedHandler{log: log, topic: topic}, nil
		},
		Middleware: lockAround(&mu),
		BatchSize:  3, Linger: time.Millisecond, CommitInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = New(cfg, broker, loggingSink{log}, zap.NewNop()).Run(ctx) }()
	defer func() { cancel(); gen.revoke(); <-done }()
	if !eventually(func() bool { return len(log.all()) == 120 }) {
		t.Fatalf("%d events, want 120", len(log.all()))
	}
	// Every processed record is written before a record of the other topic is processed.
	pending := map[string]bool{}
	for _, e := range log.all() {
		var kind, topic string
		var off int
		fmt.Sscanf(e, "%s %s %d", &kind, &topic, &off)
		id := fmt.Sprint(topic, " ", off)
		if kind == "W" {
			delete(pending, id)
			continue
		}
		for p := range pending {
			if !strings.HasPrefix(p, topic+" ") {
				t.Fatalf("%s processed while %s was not yet written: %v", id, p, log.all())
			}
		}
		pending[id] = true
	}
}

// revokingReader ends the generation as it returns its records, as a reader does whose fetched records
// are still queued when the rebalance comes: the records come back, the generation is already over.
type revokingReader struct {
	gen  *fakeGeneration
	recs []stream.Record
}

func (r *revokingReader) Fetch(ctx context.Context) (stream.Record, error) {
	if len(r.recs) > 0 {
		r.gen.revoke()
		rec := r.recs[0]
		r.recs = r.recs[1:]
		return rec, nil
	}
	<-ctx.Done()
	return stream.Record{}, ctx.Err()
}
func (r *revokingReader) Close() error { return nil }

// A batch fetched after its generation ended is neither processed nor abandoned: its records belong to
// the next generation, and a handler told of abandoned outputs drops its state (the sessions stage then
// replays its changelog even when the rebalance gives the partition straight back).
func TestBatchFetchedAfterTheGenerationEndedIsNotProcessed(t *testing.T) {
	var processed atomic.Int32
	h := &closeWatch{handlerFunc: func(batch []stream.Record) []stream.Result {
		processed.Add(int32(len(batch)))
		return echo(batch)
	}}
	gen := newGeneration(Assignment{Topic: "in", Partition: 0})
	broker := &fakeBroker{gen: gen, readers: map[string]*fakeReader{"in": {}},
		wrap: func(Reader) Reader { return &revokingReader{gen: gen, recs: records("a:1", "b:2")} }}
	runOn(t, broker, h)
	if !eventually(h.closed.Load) {
		t.Fatal("partition not closed after the generation ended")
	}
	if n := processed.Load(); n != 0 || h.abandoned.Load() {
		t.Fatalf("after the generation ended: %d records processed, abandoned=%v; want 0, false", n, h.abandoned.Load())
	}
}

// revokingLock is a Middleware that goes on only after the generation ended, as the fast path's lock
// waiting for its slot's writes during a rebalance.
func revokingLock(gen *fakeGeneration) Middleware {
	return func(_ Handler, next Step) Step {
		return func(ctx context.Context, batch []stream.Record) bool {
			gen.revoke()
			return next(ctx, batch)
		}
	}
}

// A batch whose generation ended while a middleware waited (the lock) is not processed either.
func TestBatchWhoseGenerationEndedDuringLockIsNotProcessed(t *testing.T) {
	var processed atomic.Int32
	cw := &closeWatch{handlerFunc: func(batch []stream.Record) []stream.Result {
		processed.Add(int32(len(batch)))
		return echo(batch)
	}}
	gen := newGeneration(Assignment{Topic: "in", Partition: 0})
	broker := &fakeBroker{gen: gen, readers: map[string]*fakeReader{"in": {recs: records("a:1", "b:2")}}}
	runOn(t, broker, cw, revokingLock(gen))
	if !eventually(cw.closed.Load) {
		t.Fatal("partition not closed after the generation ended")
	}
	if n := processed.Load(); n != 0 || cw.abandoned.Load() {
		t.Fatalf("after the generation ended in the middleware: %d records processed, abandoned=%v; want 0, false", n, cw.abandoned.Load())
	}
}

// runOn runs a stage of handler h (inside mw, if given) on broker until the test ends.
func runOn(t *testing.T, broker *fakeBroker, h Handler, mw ...Middleware) {
	cfg := Config{
		Name: "test", Pipeline: "inbound", GroupID: "g",
		Topics:          func(context.Context) ([]string, error) { return []string{"in"}, nil },
		RefreshInterval: time.Hour,
		NewHandler:      func(context.Context, string, int) (Handler, error) { return h, nil },
		BatchSize:       3, Linger: time.Millisecond, CommitInterval: 20 * time.Millisecond,
		DeadLetters: deadletter.Builder{Topic: "dlq"},
	}
	if len(mw) > 0 {
		cfg.Middleware = mw[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = New(cfg, broker, &fakeSink{}, zap.NewNop()).Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/kafkatest/fakekafka"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// newBroker returns a fake broker with each of topics, of one partition.
func newBroker(topics ...string) *fakekafka.Broker {
	b := fakekafka.New()
	for _, name := range topics {
		b.CreateTopic(name, 1)
	}
	return b
}

// maxBytes is the topic config that refuses records over n bytes as too large.
func maxBytes(n int) kafka.ConfigEntry {
	return kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(n)}
}

// inputs are records for in/0, in order (offsets from 0 on a new broker); a value "k:..." is keyed k.
func inputs(values ...string) []stream.Output {
	out := make([]stream.Output, len(values))
	for i, v := range values {
		key, _, _ := strings.Cut(v, ":")
		out[i] = stream.Output{Topic: "in", Partition: 0, Key: []byte(key), Value: []byte(v)}
	}
	return out
}

// produce writes outs to b before a stage runs on it.
func produce(t *testing.T, b *fakekafka.Broker, outs []stream.Output) {
	t.Helper()
	for i, err := range b.Write(context.Background(), outs) {
		if err != nil {
			t.Fatalf("produce %s: %v", outs[i].Value, err)
		}
	}
}

// values are the values of recs, in order.
func values(recs []stream.Record) []string {
	var v []string
	for _, r := range recs {
		v = append(v, string(r.Value))
	}
	return v
}

// written is the values written to topic, joined by commas (partition by partition).
func written(b *fakekafka.Broker, topic string) string {
	return strings.Join(values(b.Records(topic)), ",")
}

// committed is group g's committed offset of topic/partition, -1 when none.
func committed(b *fakekafka.Broker, topic string, partition int) int64 {
	om, _ := b.Committed(context.Background(), "g", topic, partition)
	return om.Offset
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

// echo writes every record to "out", and rejects values containing "bad".
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

// start runs a stage of group g over topic in with handler h, reading from broker and writing to sink,
// until the test ends or stop is called (a graceful stop: stop returns once the stage did).
func start(t *testing.T, broker stage.Broker, sink stage.Sink, h stage.Handler, tweak func(*stage.Config)) (stop func()) {
	t.Helper()
	cfg := stage.Config{
		Name: "test", Pipeline: "inbound", GroupID: "g",
		Topics:          func(context.Context) ([]string, error) { return []string{"in"}, nil },
		RefreshInterval: time.Hour,
		NewHandler:      func(context.Context, string, int) (stage.Handler, error) { return h, nil },
		BatchSize:       3, Linger: time.Millisecond, CommitInterval: 20 * time.Millisecond,
		DeadLetters: deadletter.Builder{Topic: "dlq"},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = stage.New(cfg, broker, sink, zap.NewNop()).Run(ctx) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second): // a write that never succeeds holds a graceful stop
			t.Error("the stage did not stop within 10 s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestTooLargeOutputIsDeadLetteredAndThePartitionFlows: one record whose output the broker refuses as
// too large becomes a too_large dead letter; the records after it on the partition are written and
// committed.
func TestTooLargeOutputIsDeadLetteredAndThePartitionFlows(t *testing.T) {
	b := newBroker("in", "dlq")
	b.CreateTopic("out", 1, maxBytes(1000))
	produce(t, b, inputs("a:1", "b:big"+strings.Repeat("x", 2000), "a:2", "c:3", "a:4", "b:5"))
	start(t, b, b, echo, nil)
	if !eventually(func() bool { return committed(b, "in", 0) == 6 }) {
		t.Fatalf("committed %d, want 6", committed(b, "in", 0))
	}
	if v := written(b, "out"); v != "a:1,a:2,c:3,a:4,b:5" {
		t.Fatalf("out = %v", v)
	}
	dl := oneDeadLetter(t, b, cim.CodeTooLarge)
	if off, _ := dl.Header(stream.HeaderSourceOffset); string(off) != "1" {
		t.Fatalf("dead letter names offset %q, want 1", off)
	}
}

// TestRefusedDeadLetterIsShrunk: a dead letter the broker refuses as too large is written without its
// value rather than retried forever or lost.
func TestRefusedDeadLetterIsShrunk(t *testing.T) {
	b := newBroker("in", "out")
	b.CreateTopic("dlq", 1, maxBytes(1000))
	bad := "a:bad" + strings.Repeat("x", 2000)
	produce(t, b, inputs("a:1", bad, "a:3"))
	start(t, b, b, echo, nil)
	if !eventually(func() bool { return committed(b, "in", 0) == 3 }) {
		t.Fatalf("committed %d, want 3", committed(b, "in", 0))
	}
	dl := b.Records("dlq")
	if len(dl) != 1 || len(dl[0].Value) != 0 {
		t.Fatalf("want one headers-only dead letter, got %d: %v", len(dl), values(dl))
	}
	if size, _ := dl[0].Header(deadletter.HeaderOriginalSize); string(size) != strconv.Itoa(len(bad)) {
		t.Fatalf("original size %q, want %d", size, len(bad))
	}
}

// TestDeadLetterIsNeverGivenUp: while the dead-letter topic does not exist, the rejected input and
// everything after it stays uncommitted (even with a give-up time set); once it is created, the dead
// letter is written and the offsets move on.
func TestDeadLetterIsNeverGivenUp(t *testing.T) {
	b := newBroker("in", "out")
	produce(t, b, inputs("a:1", "b:bad", "c:3", "d:4"))
	start(t, b, b, echo, func(c *stage.Config) {
		c.BatchSize = 1
		c.GiveUpAfter = 50 * time.Millisecond
	})
	if !eventually(func() bool { return committed(b, "in", 0) == 1 }) {
		t.Fatalf("the record before the rejected one is committed: got %d", committed(b, "in", 0))
	}
	time.Sleep(500 * time.Millisecond) // ten times the give-up time
	if got := committed(b, "in", 0); got != 1 {
		t.Fatalf("committed %d while the dead letter was not written, want 1", got)
	}
	if out := written(b, "out"); out != "a:1" {
		t.Fatalf("nothing after the rejected record may be written first (order): %v", out)
	}
	b.CreateTopic("dlq", 1)
	if !eventually(func() bool { return committed(b, "in", 0) == 4 }) {
		t.Fatalf("committed %d after recovery, want 4", committed(b, "in", 0))
	}
	if dl := written(b, "dlq"); dl != "b:bad" {
		t.Fatalf("want the one dead letter with the original value, got %v", dl)
	}
}

// TestRetriesKeepOrderPerPartition: a write that fails once for one record is retried with everything
// of its partition after it, so each partition's records land in input order. The Sink promises order
// per partition (not per key): keys a and b hash to partitions 1 and 2 of out, and b's records are
// not held back by a's failure.
func TestRetriesKeepOrderPerPartition(t *testing.T) {
	b := newBroker("in", "dlq")
	b.CreateTopic("out", 3)
	produce(t, b, inputs("a:1", "a:2", "b:1", "a:3", "b:2"))
	var failed atomic.Bool
	b.Fail = func(_ int, o stream.Output) error {
		if string(o.Value) == "a:2" && failed.CompareAndSwap(false, true) {
			return errors.New("[6] Not Leader For Partition")
		}
		return nil
	}
	start(t, b, b, echo, func(c *stage.Config) { c.BatchSize = 5 })
	if !eventually(func() bool { return committed(b, "in", 0) == 5 }) {
		t.Fatalf("committed %d, want 5", committed(b, "in", 0))
	}
	got := map[int][]string{}
	for _, r := range b.Records("out") {
		got[r.Partition] = append(got[r.Partition], string(r.Value))
	}
	want := map[int]string{1: "a:1,a:2,a:3", 2: "b:1,b:2"}
	for p, w := range want {
		if v := strings.Join(got[p], ","); v != w {
			t.Errorf("partition %d written as %s, want %s", p, v, w)
		}
	}
	if !failed.Load() || len(got) != len(want) {
		t.Fatalf("failed once %v; partitions written %v", failed.Load(), got)
	}
}

// settling is a Settler: it routes "gone:" values to a topic that does not exist, and reports each
// outcome as a notification, or as a dead letter when the write was given up on.
type settling struct{}

func (settling) Process(batch []stream.Record) []stream.Result {
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

func (settling) Settle(outcomes []stage.Outcome) []stream.Result {
	res := make([]stream.Result, len(outcomes))
	for i, o := range outcomes {
		if o.Err != nil {
			res[i].Reject = cim.Violations{{Code: stage.CodeDeliveryFailed, Message: o.Err.Error()}}
		}
		res[i].Outputs = []stream.Output{{Topic: "notes", Partition: stream.ByKey, Value: fmt.Appendf(nil, "%s failed=%t", o.Record.Value, o.Err != nil)}}
	}
	return res
}

// TestSettlerLearnsWhichInputFailed: one destination that never accepts writes fails only its own
// input (after the give-up time); the other input of the batch is delivered, and both are reported.
func TestSettlerLearnsWhichInputFailed(t *testing.T) {
	b := newBroker("in", "out", "dlq", "notes")
	produce(t, b, inputs("a:gone", "b:fine"))
	start(t, b, b, settling{}, func(c *stage.Config) { c.GiveUpAfter = 100 * time.Millisecond })
	if !eventually(func() bool { return committed(b, "in", 0) == 2 }) {
		t.Fatalf("committed %d, want 2", committed(b, "in", 0))
	}
	if v := written(b, "notes"); v != "a:gone failed=true,b:fine failed=false" {
		t.Fatalf("notes = %v", v)
	}
	if v := written(b, "out"); v != "b:fine" {
		t.Fatalf("out = %v", v)
	}
	if n := len(b.Records("dlq")); n != 1 {
		t.Fatalf("want the failed input dead-lettered once, got %d", n)
	}
}

// heldSink holds every write until release is closed or the write's context ends, as a broker that
// does not answer; entered is told of each write held. (fakekafka's Fail hook is not given the write's
// context, so it cannot hold a write the way a broker does.)
type heldSink struct {
	stage.Sink
	entered chan struct{}
	release chan struct{}
}

func newHeldSink(s stage.Sink) *heldSink {
	return &heldSink{Sink: s, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *heldSink) Write(ctx context.Context, outs []stream.Output) []error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return s.Sink.Write(ctx, outs)
}

// TestRevokedPartitionWaitsForItsWrite: a partition revoked while its write is in flight does not end
// its generation before the write finished (so the write cannot land after the next owner started),
// and commits nothing.
func TestRevokedPartitionWaitsForItsWrite(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1"))
	sink := newHeldSink(b)
	start(t, b, sink, echo, func(c *stage.Config) { c.RevokeWait = 5 * time.Second })
	select {
	case <-sink.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no write started")
	}
	ended := b.Rebalance("g", fakekafka.None)
	select {
	case <-ended:
		t.Fatal("the generation ended while its write was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(sink.release)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the generation did not end once the write finished")
	}
	if got := committed(b, "in", 0); got != -1 {
		t.Fatalf("a revoked partition committed %d", got)
	}
}

// TestRevokedPartitionGivesUpAfterRevokeWait: a write that never finishes holds a revoked partition
// for RevokeWait at most.
func TestRevokedPartitionGivesUpAfterRevokeWait(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1"))
	sink := newHeldSink(b)
	start(t, b, sink, echo, func(c *stage.Config) { c.RevokeWait = 150 * time.Millisecond })
	<-sink.entered
	began := time.Now()
	select {
	case <-b.Rebalance("g", fakekafka.None):
	case <-time.After(3 * time.Second):
	}
	if took := time.Since(began); took < 150*time.Millisecond || took > 3*time.Second {
		t.Fatalf("revoked partition returned after %v, want about RevokeWait (150ms)", took)
	}
	if out := written(b, "out"); out != "" {
		t.Fatalf("the write given up on landed: %v", out)
	}
}

// TestBudgetBoundsHeldBytes: with a budget of three records, the bytes held never exceed the budget by
// more than one record plus one batch's outputs, and every record still gets through.
func TestBudgetBoundsHeldBytes(t *testing.T) {
	const size = 1000
	b := newBroker("in", "out", "dlq")
	var vals []string
	for i := range 40 {
		vals = append(vals, fmt.Sprintf("k%d:%s", i%4, strings.Repeat("x", size-4)))
	}
	produce(t, b, inputs(vals...))
	budget := stage.NewBudget(3 * size)
	var peak atomic.Int64
	b.Fail = func(int, stream.Output) error {
		if u := budget.Used(); u > peak.Load() {
			peak.Store(u)
		}
		return nil
	}
	start(t, b, b, echo, func(c *stage.Config) { c.Budget = budget; c.BatchSize = 10 })
	if !eventually(func() bool { return committed(b, "in", 0) == 40 }) {
		t.Fatalf("committed %d, want 40", committed(b, "in", 0))
	}
	// Batches stop at the budget: at most 3 records fetched, plus one over, plus their outputs.
	if p := peak.Load(); p == 0 || p > 2*(3+1)*(size+10) {
		t.Fatalf("peak held %d bytes, budget %d", p, 3*size)
	}
	if budget.Used() != 0 {
		t.Fatalf("%d bytes still held after everything settled", budget.Used())
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
	b := newBroker("in", "changelog", "dlq")
	b.CreateTopic("ccm", 1, maxBytes(1000))
	big := "a:big" + strings.Repeat("x", 2000)
	produce(t, b, inputs("a:1", big, "a:3"))
	start(t, b, b, twoOutputs, nil)
	if !eventually(func() bool { return committed(b, "in", 0) == 3 }) {
		t.Fatalf("committed %d, want 3", committed(b, "in", 0))
	}
	if v := written(b, "changelog"); v != "state of a:1,state of "+big+",state of a:3" {
		t.Fatalf("changelog = %.80s", v)
	}
	if v, n := written(b, "ccm"), len(b.Records("dlq")); v != "a:1,a:3" || n != 1 {
		t.Fatalf("ccm = %s, %d dead letters", v, n)
	}
}

// TestRefusedRecordIsDeadLetteredAndItsDeadLetterRestamped: a record the broker refuses for good (a
// timestamp out of the topic's window) becomes a dead letter with code refused; a dead letter refused
// the same way is written again stamped now, rather than retried forever.
func TestRefusedRecordIsDeadLetteredAndItsDeadLetterRestamped(t *testing.T) {
	window := kafka.ConfigEntry{ConfigName: "message.timestamp.before.max.ms", ConfigValue: "60000"}
	b := newBroker("in")
	b.CreateTopic("out", 1, window)
	b.CreateTopic("dlq", 1, window)
	old := time.UnixMilli(1000)
	recs := inputs("a:1", "a:2")
	recs[0].Time, recs[1].Time = old, time.Now()
	produce(t, b, recs)
	// The handler stamps its outputs with their input's time.
	stamping := handlerFunc(func(batch []stream.Record) []stream.Result {
		res := echo.Process(batch)
		for i := range res {
			for j := range res[i].Outputs {
				res[i].Outputs[j].Time = batch[i].Time
			}
		}
		return res
	})
	began := time.Now()
	start(t, b, b, stamping, func(c *stage.Config) {
		c.DeadLetters.Now = func() time.Time { return old } // refused by dlq's window too
	})
	if !eventually(func() bool { return committed(b, "in", 0) == 2 }) {
		t.Fatalf("committed %d, want 2", committed(b, "in", 0))
	}
	if v := written(b, "out"); v != "a:2" {
		t.Fatalf("out = %v", v)
	}
	if dl := oneDeadLetter(t, b, stage.CodeRefused); dl.Time.Before(began.Truncate(time.Millisecond)) {
		t.Fatalf("dead letter stamped %v, want now", dl.Time)
	}
}

// oneDeadLetter is the only record on "dlq", which must carry code.
func oneDeadLetter(t *testing.T, b *fakekafka.Broker, code string) stream.Record {
	t.Helper()
	dl := b.Records("dlq")
	if len(dl) != 1 {
		t.Fatalf("want one dead letter, got %d", len(dl))
	}
	if codes, _ := dl[0].Header(deadletter.HeaderCodes); string(codes) != code {
		t.Fatalf("dead letter codes %q, want %q", codes, code)
	}
	return dl[0]
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
	b := newBroker("in", "out", "dlq")
	var vals []string
	for i := range 20 {
		vals = append(vals, fmt.Sprintf("k:%03d%s", i, strings.Repeat("x", 95)))
	}
	produce(t, b, inputs(vals...))
	start(t, b, b, h, func(c *stage.Config) { c.Budget = stage.NewBudget(1000); c.BatchSize = 20 })
	if !eventually(func() bool { return committed(b, "in", 0) == 20 }) {
		t.Fatalf("committed %d, want 20", committed(b, "in", 0))
	}
	if l := largest.Load(); l > 250+101 {
		t.Fatalf("largest batch %d bytes, want at most a quarter of the 1000-byte budget plus one record", l)
	}
}

type fetchCounter struct {
	stage.NopObserver
	failed atomic.Int64
}

func (c *fetchCounter) FetchFailed(string) { c.failed.Add(1) }

// TestFetchErrorsAreCounted: fetch errors other than an empty wait are counted (and logged, rate-limited),
// never swallowed.
func TestFetchErrorsAreCounted(t *testing.T) {
	b := newBroker("in", "out", "dlq")
	obs := &fetchCounter{}
	start(t, b, b, echo, func(c *stage.Config) {
		c.Observer = obs
		// The topic is deleted as its partition starts: every fetch of its reader fails.
		c.NewHandler = func(context.Context, string, int) (stage.Handler, error) {
			b.DeleteTopic("in")
			return echo, nil
		}
	})
	if !eventually(func() bool { return obs.failed.Load() >= 3 }) {
		t.Fatalf("%d fetch failures counted", obs.failed.Load())
	}
}

// closeWatch is a handler that records whether it was told its outputs were abandoned.
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
	b := newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1", "b:2"))
	start(t, b, b, clean, nil)
	if !eventually(func() bool { return len(b.Records("out")) == 2 }) {
		t.Fatal("outputs not written")
	}
	b.Rebalance("g", fakekafka.None)
	if !eventually(clean.closed.Load) || clean.abandoned.Load() {
		t.Fatalf("clean revoke: closed=%v abandoned=%v", clean.closed.Load(), clean.abandoned.Load())
	}

	failing := &closeWatch{handlerFunc: echo}
	b = newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1"))
	var calls atomic.Int32
	b.Fail = func(int, stream.Output) error { calls.Add(1); return errors.New("broker unavailable") }
	start(t, b, b, failing, func(c *stage.Config) { c.RevokeWait = 10 * time.Millisecond })
	if !eventually(func() bool { return calls.Load() > 0 }) {
		t.Fatal("no write attempted")
	}
	b.Rebalance("g", fakekafka.None)
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
func lockAround(mu *sync.Mutex) stage.Middleware {
	return func(_ stage.Handler, next stage.Step) stage.Step {
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

// Handlers sharing a lock (a Middleware) have their outputs written in the order their inputs were
// processed: a batch's outputs are acknowledged before another handler of the lock processes anything.
func TestSerializedHandlersWriteInProcessOrder(t *testing.T) {
	b := newBroker("a", "b", "out")
	var recs []stream.Output
	for range 30 {
		recs = append(recs, stream.Output{Topic: "a", Partition: 0, Value: []byte("x")}, stream.Output{Topic: "b", Partition: 0, Value: []byte("x")})
	}
	produce(t, b, recs)
	log := &eventLog{}
	// Each write is logged "W <value>" after a delay that leaves room for the other partition's worker.
	b.Fail = func(_ int, o stream.Output) error {
		time.Sleep(2 * time.Millisecond)
		log.add("W " + string(o.Value))
		return nil
	}
	var mu sync.Mutex
	start(t, b, b, nil, func(c *stage.Config) {
		c.Topics = func(context.Context) ([]string, error) { return []string{"a", "b"}, nil }
		c.NewHandler = func(_ context.Context, topic string, _ int) (stage.Handler, error) {
			return lockedHandler{log: log, topic: topic}, nil
		}
		c.Middleware = lockAround(&mu)
	})
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

// revokingBroker's readers end the generation as they return a record, as a reader does whose fetched
// records are still queued when the rebalance comes: the records come back, the generation is over.
type revokingBroker struct{ *fakekafka.Broker }

func (b revokingBroker) Reader(name, topic string, partition int, offset int64) (stage.Reader, error) {
	r, err := b.Broker.Reader(name, topic, partition, offset)
	return revokingReader{Reader: r, b: b.Broker}, err
}

type revokingReader struct {
	stage.Reader
	b *fakekafka.Broker
}

func (r revokingReader) Fetch(ctx context.Context) (stream.Record, error) {
	rec, err := r.Reader.Fetch(ctx)
	if err == nil {
		r.b.Rebalance("g", fakekafka.None)
	}
	return rec, err
}

// counting is the echo handler counting the records it processed.
func counting() (*closeWatch, *atomic.Int32) {
	var processed atomic.Int32
	return &closeWatch{handlerFunc: func(batch []stream.Record) []stream.Result {
		processed.Add(int32(len(batch)))
		return echo(batch)
	}}, &processed
}

// A batch fetched after its generation ended is neither processed nor abandoned: its records belong to
// the next generation, and a handler told of abandoned outputs drops its state (the sessions stage then
// replays its changelog even when the rebalance gives the partition straight back).
func TestBatchFetchedAfterTheGenerationEndedIsNotProcessed(t *testing.T) {
	h, processed := counting()
	b := newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1", "b:2"))
	start(t, revokingBroker{b}, b, h, nil)
	if !eventually(h.closed.Load) {
		t.Fatal("partition not closed after the generation ended")
	}
	if n := processed.Load(); n != 0 || h.abandoned.Load() {
		t.Fatalf("after the generation ended: %d records processed, abandoned=%v; want 0, false", n, h.abandoned.Load())
	}
}

// A batch whose generation ended while a middleware waited (the fast path's lock waiting for its
// slot's writes during a rebalance) is not processed either.
func TestBatchWhoseGenerationEndedDuringLockIsNotProcessed(t *testing.T) {
	h, processed := counting()
	b := newBroker("in", "out", "dlq")
	produce(t, b, inputs("a:1", "b:2"))
	start(t, b, b, h, func(c *stage.Config) {
		c.Middleware = func(_ stage.Handler, next stage.Step) stage.Step {
			return func(ctx context.Context, batch []stream.Record) bool {
				b.Rebalance("g", fakekafka.None)
				return next(ctx, batch)
			}
		}
	})
	if !eventually(h.closed.Load) {
		t.Fatal("partition not closed after the generation ended")
	}
	if n := processed.Load(); n != 0 || h.abandoned.Load() {
		t.Fatalf("after the generation ended in the middleware: %d records processed, abandoned=%v; want 0, false", n, h.abandoned.Load())
	}
}

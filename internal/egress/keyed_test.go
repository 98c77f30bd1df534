package egress

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// gate is a fake delivery: each record waits until the test releases its offset.
type gate struct {
	release map[int64]chan struct{}
	started chan int64 // offsets in the order their delivery began
}

func newGate(n int) *gate {
	g := &gate{release: map[int64]chan struct{}{}, started: make(chan int64, n)}
	for i := 0; i < n; i++ {
		g.release[int64(i)] = make(chan struct{})
	}
	return g
}

func (g *gate) deliver(ctx context.Context, rec stream.Record) (Answer, bool) {
	g.started <- rec.Offset
	select {
	case <-g.release[rec.Offset]:
		return Answer{Kind: Accepted}, true
	case <-ctx.Done():
		return Answer{}, false
	}
}

func (g *gate) open(off int64) { close(g.release[off]) }

// expectStarted reads the next started offset; it fails when none starts within a second.
func expectStarted(t *testing.T, g *gate, want int64) {
	t.Helper()
	select {
	case got := <-g.started:
		if got != want {
			t.Fatalf("delivery of offset %d began, want %d", got, want)
		}
	case <-time.After(time.Second):
		t.Fatalf("delivery of offset %d did not begin", want)
	}
}

func expectNoneStarted(t *testing.T, g *gate) {
	t.Helper()
	select {
	case got := <-g.started:
		t.Fatalf("delivery of offset %d began; it must wait", got)
	case <-time.After(50 * time.Millisecond):
	}
}

type moves struct {
	mu   sync.Mutex
	seen []int64
}

func (m *moves) add(next int64) { m.mu.Lock(); m.seen = append(m.seen, next); m.mu.Unlock() }
func (m *moves) last() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.seen) == 0 {
		return -1
	}
	return m.seen[len(m.seen)-1]
}

// testKeyed runs a keyed scheduler as the stage runtime does: it tracks the offsets added, writes each
// Result through record (at once unless replaced), then settles the offset and tells moves the
// committable offset whenever it moves.
type testKeyed struct {
	*keyed
	m       *moves
	mu      sync.Mutex
	offsets *stage.Offsets
	times   map[int64]time.Time
	record  func(rec stream.Record, res stream.Result, written func())
}

func newTestKeyed(g *gate, max int, m *moves) *testKeyed {
	k := wrapKeyed(newKeyed(max), m)
	k.deliver = g.deliver
	return k
}

func wrapKeyed(k *keyed, m *moves) *testKeyed {
	k.result = outcome{notifications: "n"}.result
	k.settled = func(stream.Record, Answer, time.Duration) {}
	tk := &testKeyed{keyed: k, m: m, offsets: stage.NewOffsets(), times: map[int64]time.Time{}}
	tk.record = func(_ stream.Record, _ stream.Result, written func()) { written() }
	return tk
}

func (k *testKeyed) add(ctx context.Context, r stream.Record) (stub bool) {
	k.mu.Lock()
	k.offsets.Track(r.Offset)
	k.times[r.Offset] = r.Time
	k.mu.Unlock()
	return !k.Add(ctx, r, func(r stream.Record, res stream.Result, written func()) {
		k.record(r, res, func() {
			k.mu.Lock()
			if k.offsets.Settle(r.Offset) {
				next, _ := k.offsets.Committable()
				k.m.add(next)
			}
			delete(k.times, r.Offset)
			k.mu.Unlock()
			written()
		})
	})
}

func (k *testKeyed) waitSpace(ctx context.Context) bool { return k.Admit(ctx) }
func (k *testKeyed) wait()                              { k.Wait() }

func (k *testKeyed) oldest() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	off, ok := k.offsets.Oldest()
	return k.times[off], ok
}

// unsettled is every record held in full and not settled.
func (k *testKeyed) unsettled() []int64 {
	k.keyed.mu.Lock()
	defer k.keyed.mu.Unlock()
	var out []int64
	for off := range k.held {
		if !k.stubs[off] {
			out = append(out, off)
		}
	}
	return out
}

func rec(off int64, key string) stream.Record {
	return stream.Record{Topic: "t", Offset: off, Key: []byte(key), Time: time.Unix(1000+off, 0)}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestKeyedOrderPerKeyParallelAcross: a key's second message waits for its first; another key's message
// goes at once; the committed offset never passes an unsettled message, whatever settles first.
func TestKeyedOrderPerKeyParallelAcross(t *testing.T) {
	g := newGate(4)
	var m moves
	k := newTestKeyed(g, 10, &m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k.add(ctx, rec(0, "ann"))
	expectStarted(t, g, 0)
	k.add(ctx, rec(1, "ann"))
	expectNoneStarted(t, g) // ann's second waits behind her first
	k.add(ctx, rec(2, "bob"))
	expectStarted(t, g, 2) // bob does not wait for ann
	k.add(ctx, rec(3, "cyd"))
	expectStarted(t, g, 3)

	g.open(2) // bob settles first: offset 0 is still pending, so nothing is committable
	g.open(3)
	time.Sleep(20 * time.Millisecond)
	if got := m.last(); got != -1 {
		t.Fatalf("committable offset %d while offset 0 is unsettled", got)
	}
	if t0, ok := k.oldest(); !ok || !t0.Equal(time.Unix(1000, 0)) {
		t.Fatalf("oldest pending %v %v, want offset 0's time", t0, ok)
	}
	g.open(0)
	expectStarted(t, g, 1) // ann's second goes once her first is decided
	waitFor(t, "commit after offset 0", func() bool { return m.last() == 1 })
	g.open(1)
	waitFor(t, "commit of everything", func() bool { return m.last() == 4 })
	k.wait()
	if _, ok := k.oldest(); ok {
		t.Fatal("nothing should be pending")
	}
}

// TestKeyedBoundsRecordsHeld: with max records held, waitSpace blocks until one settles.
func TestKeyedBoundsRecordsHeld(t *testing.T) {
	g := newGate(3)
	var m moves
	k := newTestKeyed(g, 2, &m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k.add(ctx, rec(0, "a"))
	k.add(ctx, rec(1, "b"))
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if k.waitSpace(short) {
		t.Fatal("waitSpace returned with 2 of 2 records held")
	}
	g.open(1)
	long, stop2 := context.WithTimeout(ctx, 2*time.Second)
	defer stop2()
	if !k.waitSpace(long) {
		t.Fatal("waitSpace still blocked after a record settled")
	}
}

// TestKeyedStopLeavesUnsettledUncommitted: a stop in the middle of a delivery commits nothing past it,
// and a record decided but not yet recorded does not count as settled.
func TestKeyedStopLeavesUnsettledUncommitted(t *testing.T) {
	g := newGate(3)
	var m moves
	k := newTestKeyed(g, 10, &m)
	var pending []func()
	var mu sync.Mutex
	k.record = func(_ stream.Record, _ stream.Result, done func()) {
		mu.Lock()
		pending = append(pending, done)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.add(ctx, rec(0, "a"))
	k.add(ctx, rec(1, "b"))
	k.add(ctx, rec(2, "c"))
	for i := 0; i < 3; i++ {
		<-g.started
	}
	g.open(0) // decided, but its outcome never acknowledged
	g.open(2)
	waitFor(t, "two decided", func() bool { mu.Lock(); defer mu.Unlock(); return len(pending) == 2 })
	cancel()
	k.wait()
	if got := m.last(); got != -1 {
		t.Fatalf("committable offset %d, want none: offset 0's outcome was never acknowledged", got)
	}
	if n := len(k.unsettled()); n != 3 {
		t.Fatalf("%d unsettled, want 3", n)
	}
}

// TestKeyedManyKeysRandomSettleOrder: whatever order deliveries finish in, the committable offsets
// only grow and end at the last record plus one; each key's records began in offset order.
func TestKeyedManyKeysRandomSettleOrder(t *testing.T) {
	const n = 200
	var m moves
	k := wrapKeyed(newKeyed(n), &m)
	var mu sync.Mutex
	began := map[string][]int64{}
	k.deliver = func(_ context.Context, r stream.Record) (Answer, bool) {
		mu.Lock()
		began[string(r.Key)] = append(began[string(r.Key)], r.Offset)
		mu.Unlock()
		time.Sleep(time.Duration(r.Offset%7) * time.Millisecond)
		return Answer{Kind: Accepted}, true
	}
	k.record = func(_ stream.Record, _ stream.Result, done func()) { go done() }
	ctx := context.Background()
	for i := int64(0); i < n; i++ {
		k.add(ctx, rec(i, fmt.Sprint("k", i%13)))
	}
	waitFor(t, "all settled", func() bool { return m.last() == n })
	m.mu.Lock()
	for i := 1; i < len(m.seen); i++ {
		if m.seen[i] <= m.seen[i-1] {
			t.Fatalf("committable offset went from %d to %d", m.seen[i-1], m.seen[i])
		}
	}
	m.mu.Unlock()
	for key, offs := range began {
		for i := 1; i < len(offs); i++ {
			if offs[i] <= offs[i-1] {
				t.Fatalf("key %s: offset %d began after %d", key, offs[i], offs[i-1])
			}
		}
	}
}

// TestKeyedBoundsBytesHeld: past maxSize bytes held, waitSpace blocks; a single record larger than the
// bound is still let in when nothing is held, so a partition never stalls on one big record.
func TestKeyedBoundsBytesHeld(t *testing.T) {
	g := newGate(3)
	var m moves
	k := newTestKeyed(g, 100, &m)
	k.maxSize = 100
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := rec(0, "a")
	big.Value = make([]byte, 500)
	if !k.waitSpace(ctx) {
		t.Fatal("an empty partition must take a record larger than the bound")
	}
	k.add(ctx, big)
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if k.waitSpace(short) {
		t.Fatal("waitSpace returned with 500 of 100 bytes held")
	}
	g.open(0)
	long, stop2 := context.WithTimeout(ctx, 2*time.Second)
	defer stop2()
	if !k.waitSpace(long) {
		t.Fatal("waitSpace still blocked after the record settled")
	}
}

// TestKeyedStubsBeyondPerKey: a key's records beyond perKey are held as offset and key only (they do not
// count against max), re-read when their turn comes; the stubs have a bound of their own.
func TestKeyedStubsBeyondPerKey(t *testing.T) {
	g := newGate(6)
	var m moves
	k := newTestKeyed(g, 2, &m)
	k.perKey, k.maxStubs = 1, 3
	var loaded []int64
	k.load = func(_ context.Context, stub stream.Record) (stream.Record, bool) {
		loaded = append(loaded, stub.Offset) // only the key's worker loads, one at a time
		full := stub
		full.Value = []byte("re-read")
		return full, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for off := int64(0); off < 4; off++ {
		if !k.waitSpace(ctx) {
			t.Fatal("no space")
		}
		if stub := k.add(ctx, rec(off, "bad")); stub != (off > 0) {
			t.Fatalf("offset %d: stub %v", off, stub)
		}
	}
	expectStarted(t, g, 0)
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if k.waitSpace(short) {
		t.Fatal("space with maxStubs stubs held")
	}
	if u := k.unsettled(); len(u) != 1 || u[0] != 0 {
		t.Fatalf("unsettled in full: %v, want offset 0 only", u)
	}
	for off := int64(0); off < 4; off++ {
		if off > 0 {
			expectStarted(t, g, off)
		}
		g.open(off)
	}
	waitFor(t, "everything settled", func() bool { return m.last() == 4 })
	if fmt.Sprint(loaded) != "[1 2 3]" {
		t.Errorf("re-read %v, want [1 2 3]", loaded)
	}
}

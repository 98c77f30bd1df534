package fakekafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest/fakekafka"
	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// backend is a broker under test: the fake, or Kafka through kafkaedge. The conformance cases state
// what cimstream relies on; both must pass every one, so the fake promises nothing Kafka does not.
type backend struct {
	broker interface {
		stage.Broker
		stage.MetadataFetcher
	}
	sink stage.Sink
	logs logs
	// topic creates a topic with a unique name; name gives a unique name (of a group, a missing topic).
	topic func(t *testing.T, partitions int, configs ...kafka.ConfigEntry) string
	name  func(t *testing.T, kind string) string
	txn   func(t *testing.T) txnProducer
	// rebalance makes group rebalance while its member holds a generation (Kafka: a second member joins
	// and leaves again).
	rebalance func(t *testing.T, group, topic string)
}

// logs is what the dead-letter tools read (kafkaedge.Ranges, ReadRange, ReadWritten).
type logs interface {
	Ranges(ctx context.Context, topic string) ([]kafkaedge.PartitionRange, error)
	Read(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error
	ReadWritten(ctx context.Context, topic string, partition int, from int64, fn func(stream.Record) error) error
}

// txnProducer is a connector's transactional producer (kafkatest.TxnProducer, fakekafka.TxnProducer).
type txnProducer interface {
	Begin()
	Send(topic string, partition int, key, value string) int64
	Commit()
	Abort()
}

// conformance runs every case on a new backend each.
func conformance(t *testing.T, newBackend func(t *testing.T) backend) {
	cases := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"SinkKeepsOrderPerPartitionOnTheJavaClientsPartitions", sinkOrder},
		{"RecordsKeepKeyValueHeadersAndTime", roundTrip},
		{"TooLargeRecordFailsAloneAndItsPartitionGoesOn", tooLarge},
		{"RecordOutsideTheTimestampWindowIsRefused", refusedTimestamp},
		{"MissingTopicFailsOnlyItsRecordsAndMayBeRetried", missingTopic},
		{"ReaderFromAnOffsetWaitsAtTheEnd", readerFromOffset},
		{"ReaderAtFirstOffsetHasNoPositionBeforeItsFirstFetch", readerAtFirstOffset},
		{"PositionPassesTheMarkersOfACommittedTransaction", committedTransaction},
		{"OpenTransactionHoldsReadersAtTheLastStableOffset", openTransaction},
		{"AbortedTransactionIsSkipped", abortedTransaction},
		{"RangesOfAMissingTopicIsErrNoTopic", missingRanges},
		{"GroupStartsAtFirstOffsetAndResumesAtCommitsWithMetadata", groupCommits},
		{"CloseEndsTheGenerationAndWaitsForItsFunctions", closeWaits},
		{"AFunctionReturningEndsTheGeneration", functionEndsGeneration},
		{"RebalanceEndsTheGenerationAndRefusesItsCommits", rebalance},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, newBackend(t)) })
	}
}

// TestConformanceOfTheFake runs the cases against the fake.
func TestConformanceOfTheFake(t *testing.T) {
	conformance(t, func(t *testing.T) backend {
		fk := fakekafka.New()
		n := 0
		name := func(_ *testing.T, kind string) string { n++; return fmt.Sprint(kind, n) }
		return backend{broker: fk, sink: fk, logs: fk, name: name,
			topic: func(t *testing.T, partitions int, configs ...kafka.ConfigEntry) string {
				topic := name(t, "topic")
				fk.CreateTopic(topic, partitions, configs...)
				return topic
			},
			txn:       func(*testing.T) txnProducer { return fk.TxnProducer() },
			rebalance: func(_ *testing.T, group, _ string) { fk.Rebalance(group, nil) },
		}
	})
}

var at = time.UnixMilli(1732400000123)

func out(topic string, partition int, key, value string) stream.Output {
	return stream.Output{Topic: topic, Partition: partition, Key: []byte(key), Value: []byte(value), Time: at}
}

// write writes outs and fails the test on any error but those a stage retries while a new topic's
// leaders settle.
func write(t *testing.T, b backend, outs ...stream.Output) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 0; len(outs) > 0; attempt++ {
		var again []stream.Output
		for i, err := range b.sink.Write(ctx, outs) {
			switch {
			case err == nil:
			case stage.Final(err) || attempt == 20:
				t.Fatalf("write %s/%d %q: %v", outs[i].Topic, outs[i].Partition, outs[i].Value, err)
			default:
				again = append(again, outs[i])
			}
		}
		if outs = again; len(outs) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// read reads a partition from offset from until it holds n records (at most 20 s).
func read(t *testing.T, b backend, topic string, partition int, from int64, n int) []stream.Record {
	t.Helper()
	r, err := b.broker.Reader("test", topic, partition, from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []stream.Record
	for len(recs) < n {
		rec, err := r.Fetch(ctx)
		if err != nil {
			t.Fatalf("%s/%d: %d of %d records read: %v", topic, partition, len(recs), n, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// bounded is a context for one wait of the test (20 s at most).
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// idle fetches once more with a short wait, which must run out, and returns the reader's position.
func idle(t *testing.T, r stage.Reader) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if rec, err := r.Fetch(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch at the end: %v, offset %d %q", err, rec.Offset, rec.Value)
	}
	return r.(stage.Positioner).Position()
}

func valuesOf(recs []stream.Record) string {
	var v []string
	for _, r := range recs {
		v = append(v, fmt.Sprintf("%d:%s", r.Offset, r.Value))
	}
	return strings.Join(v, ",")
}

func sinkOrder(t *testing.T, b backend) {
	topic := b.topic(t, 3)
	var outs []stream.Output
	for i := range 30 {
		outs = append(outs, out(topic, stream.ByKey, fmt.Sprint("customer-", i%5), fmt.Sprint(i)))
	}
	outs = append(outs, out(topic, 1, "customer-0", "explicit"))
	write(t, b, outs...)
	want := map[int][]string{}
	for _, o := range outs {
		p := o.Partition
		if p < 0 {
			p = kafkaedge.HomePartition(o.Key, 3)
		}
		want[p] = append(want[p], fmt.Sprintf("%d:%s", len(want[p]), o.Value))
	}
	for p := range 3 {
		if got := valuesOf(read(t, b, topic, p, 0, len(want[p]))); got != strings.Join(want[p], ",") {
			t.Errorf("partition %d holds %s, want %s", p, got, strings.Join(want[p], ","))
		}
	}
}

func roundTrip(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	full := out(topic, 0, "k", "v")
	full.Headers = []stream.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("3")}}
	tomb := out(topic, 0, "k", "")
	tomb.Value = nil
	write(t, b, full, tomb)
	recs := read(t, b, topic, 0, 0, 2)
	got := recs[0]
	if got.Topic != topic || got.Partition != 0 || got.Offset != 0 || string(got.Key) != "k" || string(got.Value) != "v" || !got.Time.Equal(at) {
		t.Errorf("read %s/%d@%d %q=%q at %v", got.Topic, got.Partition, got.Offset, got.Key, got.Value, got.Time)
	}
	if fmt.Sprint(got.Headers) != fmt.Sprint(full.Headers) {
		t.Errorf("headers %v, want %v in order", got.Headers, full.Headers)
	}
	if recs[1].Value != nil || !bytes.Equal(recs[1].Key, []byte("k")) {
		t.Errorf("tombstone read as %q=%q, want a nil value", recs[1].Key, recs[1].Value)
	}
}

func tooLarge(t *testing.T, b backend) {
	topic := b.topic(t, 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "4000"})
	write(t, b, out(topic, 0, "k", "first")) // leaders settled
	small := out(topic, 0, "k", strings.Repeat("s", 3000))
	errs := b.sink.Write(context.Background(), []stream.Output{small, out(topic, 0, "k", strings.Repeat("B", 6000)), small})
	if errs[0] != nil || !errors.Is(errs[1], stage.ErrTooLarge) || errs[2] != nil {
		t.Fatalf("errors %v, want only the 6000-byte record too large", errs)
	}
	free := b.topic(t, 1)
	write(t, b, out(free, 0, "k", "first"))
	if err := b.sink.Write(context.Background(), []stream.Output{out(free, 0, "k", strings.Repeat("C", 2<<20))})[0]; !errors.Is(err, stage.ErrTooLarge) {
		t.Fatalf("2 MiB on a topic of default limits: %v, want too large", err)
	}
	if got := read(t, b, topic, 0, 0, 3); len(got[1].Value) != 3000 || got[2].Offset != 2 {
		t.Fatalf("partition holds %s", valuesOf(got))
	}
}

func refusedTimestamp(t *testing.T, b backend) {
	topic := b.topic(t, 1, kafka.ConfigEntry{ConfigName: "message.timestamp.before.max.ms", ConfigValue: "3600000"})
	now := out(topic, 0, "k", "now")
	now.Time = time.Now()
	write(t, b, now)
	old := out(topic, 0, "k", "old")
	old.Time = time.Now().Add(-2 * time.Hour)
	errs := b.sink.Write(context.Background(), []stream.Output{old, now})
	if !errors.Is(errs[0], stage.ErrRefused) || errs[1] != nil {
		t.Fatalf("errors %v, want the record two hours old refused, the next written", errs)
	}
}

func missingTopic(t *testing.T, b backend) {
	good, missing := b.topic(t, 1), b.name(t, "missing")
	write(t, b, out(good, 0, "k", "first"))
	errs := b.sink.Write(context.Background(), []stream.Output{out(good, 0, "k", "a"), out(missing, stream.ByKey, "k", "m"), out(good, 0, "k", "b")})
	if errs[0] != nil || errs[2] != nil || stage.Final(errs[1]) || !errors.Is(errs[1], kafka.UnknownTopicOrPartition) {
		t.Fatalf("errors %v, want a retriable unknown topic for the missing one only", errs)
	}
	if got := valuesOf(read(t, b, good, 0, 1, 2)); got != "1:a,2:b" {
		t.Fatalf("good topic holds %s", got)
	}
}

func readerFromOffset(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	for i := range 5 {
		write(t, b, out(topic, 0, "k", fmt.Sprint(i)))
	}
	r, err := b.broker.Reader("test", topic, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if p := r.(stage.Positioner).Position(); p != 2 {
		t.Errorf("position %d before the first fetch, want 2", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []stream.Record
	for range 3 {
		rec, err := r.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if got := valuesOf(recs); got != "2:2,3:3,4:4" {
		t.Fatalf("read %s", got)
	}
	if p := idle(t, r); p != 5 {
		t.Errorf("position %d past the last record, want 5", p)
	}
	go func() { time.Sleep(200 * time.Millisecond); write(t, b, out(topic, 0, "k", "late")) }()
	if rec, err := r.Fetch(ctx); err != nil || rec.Offset != 5 {
		t.Fatalf("a waiting reader gets the record written meanwhile: %v %d", err, rec.Offset)
	}
}

func readerAtFirstOffset(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	write(t, b, out(topic, 0, "k", "a"), out(topic, 0, "k", "b"))
	r, err := b.broker.Reader("test", topic, 0, kafka.FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if p := r.(stage.Positioner).Position(); p >= 0 {
		t.Errorf("position %d before the first fetch resolved the first offset, want negative", p)
	}
	rec, err := r.Fetch(bounded(t))
	if err != nil || rec.Offset != 0 {
		t.Fatalf("first fetch: %v, offset %d", err, rec.Offset)
	}
	if p := r.(stage.Positioner).Position(); p != 1 {
		t.Errorf("position %d after offset 0, want 1", p)
	}
}

func committedTransaction(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	p := b.txn(t)
	p.Begin()
	p.Send(topic, 0, "k", "a")
	p.Send(topic, 0, "k", "b")
	p.Commit()
	r, err := b.broker.Reader("test", topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 2 {
		if rec, err := r.Fetch(bounded(t)); err != nil || rec.Offset != int64(i) {
			t.Fatalf("fetch %d: %v, offset %d", i, err, rec.Offset)
		}
	}
	if pos := idle(t, r); pos != 3 {
		t.Errorf("position %d, want 3: past the commit marker at 2", pos)
	}
	if rs, err := b.logs.Ranges(context.Background(), topic); err != nil || rs[0].End != 3 {
		t.Errorf("ranges %+v %v, want the end at 3", rs, err)
	}
}

func openTransaction(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	write(t, b, out(topic, 0, "k", "before"))
	p := b.txn(t)
	p.Begin()
	if off := p.Send(topic, 0, "k", "held"); off != 1 {
		t.Fatalf("transaction's record at %d", off)
	}
	write(t, b, out(topic, 0, "k", "after"))
	ctx := context.Background()
	if rs, err := b.logs.Ranges(ctx, topic); err != nil || len(rs) != 1 || rs[0].End != 1 || rs[0].First != 0 {
		t.Errorf("ranges %+v %v, want [0, 1): the last stable offset", rs, err)
	}
	var got []stream.Record
	collect := func(r stream.Record) error { got = append(got, r); return nil }
	if err := b.logs.Read(ctx, topic, 0, 0, 100, collect); err != nil || valuesOf(got) != "0:before" {
		t.Errorf("read %s %v, want what lies below the last stable offset", valuesOf(got), err)
	}
	got = nil
	if err := b.logs.ReadWritten(ctx, topic, 0, 0, collect); err != nil || valuesOf(got) != "0:before,1:held,2:after" {
		t.Errorf("read written %s %v, want everything", valuesOf(got), err)
	}
	r, err := b.broker.Reader("test", topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rec, err := r.Fetch(bounded(t)); err != nil || rec.Offset != 0 {
		t.Fatalf("fetch: %v, offset %d", err, rec.Offset)
	}
	if pos := idle(t, r); pos != 1 {
		t.Errorf("position %d while the transaction is open, want 1", pos)
	}
	p.Commit()
	for _, want := range []int64{1, 2} {
		if rec, err := r.Fetch(bounded(t)); err != nil || rec.Offset != want {
			t.Fatalf("after the commit: %v, offset %d, want %d", err, rec.Offset, want)
		}
	}
	if pos := idle(t, r); pos != 4 {
		t.Errorf("position %d, want 4: past the marker at 3", pos)
	}
}

func abortedTransaction(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	p := b.txn(t)
	p.Begin()
	p.Send(topic, 0, "k", "aborted")
	p.Abort()
	write(t, b, out(topic, 0, "k", "kept"))
	if got := valuesOf(read(t, b, topic, 0, 0, 1)); got != "2:kept" {
		t.Errorf("read %s, want only the record after the abort marker", got)
	}
	var got []stream.Record
	ctx := context.Background()
	if err := b.logs.ReadWritten(ctx, topic, 0, 0, func(r stream.Record) error { got = append(got, r); return nil }); err != nil || valuesOf(got) != "0:aborted,2:kept" {
		t.Errorf("read written %s %v, want the aborted record too", valuesOf(got), err)
	}
	got = nil
	if err := b.logs.Read(ctx, topic, 0, 0, 3, func(r stream.Record) error { got = append(got, r); return nil }); err != nil || valuesOf(got) != "2:kept" {
		t.Errorf("read %s %v", valuesOf(got), err)
	}
}

func missingRanges(t *testing.T, b backend) {
	if _, err := b.logs.Ranges(context.Background(), b.name(t, "missing")); !errors.Is(err, kafkaedge.ErrNoTopic) {
		t.Fatalf("ranges of a missing topic: %v", err)
	}
	topic := b.topic(t, 3)
	write(t, b, out(topic, 2, "k", "a"), out(topic, 2, "k", "b"), out(topic, 0, "k", "c"))
	rs, err := b.logs.Ranges(context.Background(), topic)
	if err != nil || fmt.Sprint(rs) != "[{0 0 1} {1 0 0} {2 0 2}]" {
		t.Fatalf("ranges %v %v", rs, err)
	}
}

// next joins group on topics and waits for a generation with assignments.
func next(t *testing.T, b backend, group string, topics ...string) (stage.Group, stage.Generation) {
	t.Helper()
	g, err := b.broker.Group(group, topics)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, nextOf(t, g)
}

func nextOf(t *testing.T, g stage.Group) stage.Generation {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for {
		gen, err := g.Next(ctx)
		if err != nil {
			t.Fatalf("no generation: %v", err)
		}
		if len(gen.Assignments()) > 0 {
			return gen
		}
	}
}

// offsets lists a generation's assignments as "partition@offset" in partition order.
func offsets(gen stage.Generation) string {
	at := map[int]int64{}
	for _, a := range gen.Assignments() {
		at[a.Partition] = a.Offset
	}
	var s []string
	for p := range len(at) + 8 {
		if off, ok := at[p]; ok {
			s = append(s, fmt.Sprintf("%d@%d", p, off))
		}
	}
	return strings.Join(s, ",")
}

func groupCommits(t *testing.T, b backend) {
	topic, group := b.topic(t, 2), b.name(t, "group")
	g, gen := next(t, b, group, topic)
	if got := offsets(gen); got != "0@-2,1@-2" {
		t.Fatalf("assignments %s, want both partitions at the first offset", got)
	}
	ctx := context.Background()
	if om, err := b.broker.Committed(ctx, group, topic, 0); err != nil || om.Offset != -1 {
		t.Fatalf("committed before any commit: %+v %v, want -1", om, err)
	}
	if err := gen.(stage.MetadataCommitter).CommitMetadata(map[string]map[int]stage.OffsetMeta{topic: {0: {Offset: 3, Metadata: "settled 5,7"}}}); err != nil {
		t.Fatal(err)
	}
	if err := gen.Commit(map[string]map[int]int64{topic: {1: 5}}); err != nil {
		t.Fatal(err)
	}
	for p, want := range []stage.OffsetMeta{{Offset: 3, Metadata: "settled 5,7"}, {Offset: 5}} {
		if om, err := b.broker.Committed(ctx, group, topic, p); err != nil || om != want {
			t.Errorf("committed %d: %+v %v, want %+v", p, om, err, want)
		}
	}
	g.Close()
	if err := gen.Commit(map[string]map[int]int64{topic: {1: 6}}); err == nil {
		t.Error("a generation of a closed member committed")
	}
	_, again := next(t, b, group, topic)
	if got := offsets(again); got != "0@3,1@5" || again.ID() <= gen.ID() {
		t.Errorf("rejoined: generation %d after %d, assignments %s, want 0@3,1@5", again.ID(), gen.ID(), got)
	}
}

func closeWaits(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	g, gen := next(t, b, b.name(t, "group"), topic)
	var returned atomic.Bool
	gen.Start(func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond)
		returned.Store(true)
	})
	g.Close()
	if !returned.Load() {
		t.Fatal("Close returned before the generation's function")
	}
}

func functionEndsGeneration(t *testing.T, b backend) {
	topic := b.topic(t, 1)
	g, gen := next(t, b, b.name(t, "group"), topic)
	ended := make(chan struct{})
	gen.Start(func(ctx context.Context) { <-ctx.Done(); close(ended) })
	gen.Start(func(context.Context) {})
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the generation went on after one of its functions returned")
	}
	if again := nextOf(t, g); again.ID() <= gen.ID() || offsets(again) != "0@-2" {
		t.Errorf("next generation %d after %d, assignments %s", again.ID(), gen.ID(), offsets(again))
	}
}

func rebalance(t *testing.T, b backend) {
	topic, group := b.topic(t, 2), b.name(t, "group")
	g, gen := next(t, b, group, topic)
	if err := gen.Commit(map[string]map[int]int64{topic: {0: 4}}); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	gen.Start(func(ctx context.Context) { <-ctx.Done(); close(ended) })
	b.rebalance(t, group, topic)
	select {
	case <-ended:
	case <-time.After(45 * time.Second):
		t.Fatal("the generation did not end")
	}
	if err := gen.Commit(map[string]map[int]int64{topic: {0: 5}}); err == nil {
		t.Error("a generation that ended committed")
	}
	again := nextOf(t, g)
	for _, a := range again.Assignments() {
		if want := map[int]int64{0: 4, 1: kafka.FirstOffset}[a.Partition]; a.Offset != want {
			t.Errorf("partition %d assigned at %d, want %d", a.Partition, a.Offset, want)
		}
	}
	if again.ID() <= gen.ID() {
		t.Errorf("generation %d after %d", again.ID(), gen.ID())
	}
}

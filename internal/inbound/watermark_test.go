package inbound

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stream"
)

func offsets(topic string, committedEnd ...int64) []kafkaedge.PartitionOffsets {
	var out []kafkaedge.PartitionOffsets
	for i := 0; i+1 < len(committedEnd); i += 2 {
		out = append(out, kafkaedge.PartitionOffsets{Topic: topic, Partition: i / 2, Committed: committedEnd[i], End: committedEnd[i+1]})
	}
	return out
}

// A snapshot passes only when the ingest stage committed past its ends and then the sessions stage
// committed past the repartition ends read after that; each repartition partition on its own.
func TestWatermarkFollowsBothStages(t *testing.T) {
	w := NewWatermarks()
	// t=1000: connector partitions end at 10 and 5, ingest committed 8 and 5; repartition 2 partitions.
	w.Observe(1000, offsets("in", 8, 10, 5, 5), nil, offsets("rep", 20, 20, 7, 7))
	if w.Of(0) != 0 || w.Of(1) != 0 {
		t.Fatal("nothing passed yet")
	}
	// t=2000: ingest reached 10 and 5 (snapshot 1000 passes stage 1); repartition now ends at 25 and 9,
	// the sessions stage committed 22 and 9.
	w.Observe(2000, offsets("in", 10, 12, 5, 5), nil, offsets("rep", 22, 25, 9, 9))
	if w.Of(0) != 0 {
		t.Fatalf("partition 0 has not applied up to 25: %d", w.Of(0))
	}
	if w.Of(1) != 1000 {
		t.Fatalf("partition 1 applied everything of snapshot 1000: %d", w.Of(1))
	}
	// t=3000: ingest at 12 (snapshot 2000 passes), sessions committed 25 and 11.
	w.Observe(3000, offsets("in", 12, 12, 5, 5), nil, offsets("rep", 25, 27, 11, 11))
	if w.Of(0) != 1000 || w.Of(1) != 2000 {
		t.Fatalf("watermarks %d, %d; want 1000, 2000", w.Of(0), w.Of(1))
	}
}

// An ingest partition that stays behind (a stalled member, an outage) holds every watermark back, however
// long the wall clock runs; a connector topic found after the snapshot must be caught up too.
func TestWatermarkHeldByAStalledPartition(t *testing.T) {
	w := NewWatermarks()
	for at := int64(1000); at <= 60_000; at += 1000 {
		w.Observe(at, offsets("in", 3, 4, 9, 9), nil, offsets("rep", 50, 50))
	}
	if w.Of(0) != 0 {
		t.Fatalf("a stalled ingest partition must hold the watermark: %d", w.Of(0))
	}
	w.Observe(61_000, offsets("in", 4, 4, 9, 9), nil, offsets("rep", 50, 50))
	w.Observe(62_000, offsets("in", 4, 4, 9, 9), nil, offsets("rep", 50, 50))
	if got := w.Of(0); got < 1000 || got > 61_000 {
		t.Fatalf("once caught up the watermark advances to a snapshot's time: %d", got)
	}

	w2 := NewWatermarks()
	w2.Observe(1000, offsets("in", 4, 4), nil, offsets("rep", 5, 5))
	late := append(offsets("in", 4, 4), kafkaedge.PartitionOffsets{Topic: "new", Partition: 0, Committed: 0, End: 30})
	w2.Observe(2000, late, nil, offsets("rep", 5, 5))
	w2.Observe(3000, late, nil, offsets("rep", 5, 5))
	if w2.Of(0) != 0 {
		t.Fatalf("a new connector topic with unprocessed records holds the watermark: %d", w2.Of(0))
	}
}

// The number of snapshots waited on is bounded, and the watermark never goes back.
func TestWatermarkIsBoundedAndMonotonic(t *testing.T) {
	w := NewWatermarks()
	for at := int64(1); at <= 1000; at++ {
		w.Observe(at, offsets("in", 0, at), nil, offsets("rep", 0, at))
	}
	if len(w.ingest[0]) > maxPendingMarks || len(w.pending[0]) > maxPendingMarks {
		t.Fatalf("pending %d / %d", len(w.ingest[0]), len(w.pending[0]))
	}
	prev := int64(0)
	for at := int64(1001); at <= 1020; at++ {
		w.Observe(at, offsets("in", 2000, 2000), nil, offsets("rep", 2000, 2000))
		if got := w.Of(0); got < prev {
			t.Fatalf("watermark went back: %d after %d", got, prev)
		} else {
			prev = got
		}
	}
	if prev < 1001 {
		t.Fatalf("caught up, the watermark follows the readings: %d", prev)
	}
}

// A reading missing one partition of a stalled topic must not release the watermark.
func TestWatermarkHeldWhenAPartitionIsMissing(t *testing.T) {
	w := NewWatermarks()
	for at := int64(1000); at <= 10_000; at += 1000 {
		w.Observe(at, offsets("in", 3, 4, 9, 9), nil, offsets("rep", 50, 50))
	}
	w.Observe(11_000, offsets("in", 3, 4, 9, 9)[1:], nil, offsets("rep", 50, 50))
	w.Observe(12_000, offsets("in", 3, 4, 9, 9), nil, offsets("rep", 50, 50))
	if got := w.Of(0); got != 0 {
		t.Fatalf("a stalled partition missing from one reading released the watermark to %d", got)
	}
	// A topic gone from the readings (deleted) holds nothing back.
	w.Observe(13_000, offsets("other", 1, 1), nil, offsets("rep", 50, 50))
	w.Observe(14_000, offsets("other", 1, 1), nil, offsets("rep", 50, 50))
	if got := w.Of(0); got == 0 {
		t.Fatal("a deleted topic must not hold the watermark for good")
	}
}

// held is a channel partition with an open transaction: committed up to its last stable offset lso,
// its high watermark high.
func held(topic string, partition int, lso, high int64) kafkaedge.PartitionOffsets {
	return kafkaedge.PartitionOffsets{Topic: topic, Partition: partition, Committed: lso, End: lso, High: high}
}

// An open transaction on channel A's partition 0, whose records go to sessions partition 0, holds
// sessions partition 0 only: partition 1 (channel B's quiet customer) keeps advancing for as long as the
// transaction stays open, well past the snapshots waited on. Once the transaction ends and the group
// read past it, partition 0 advances too.
func TestWatermarkOpenTransactionHoldsOnlyWhereItsRecordsGo(t *testing.T) {
	w := NewWatermarks()
	to0 := map[partitionKey]Held{{"a", 0}: {To: []int{0}}}
	for at := int64(1000); at <= 20_000; at += 1000 {
		channels := []kafkaedge.PartitionOffsets{held("a", 0, 5, 9), held("b", 0, 7, 7), held("b", 1, 3, 3)}
		w.Observe(at, channels, to0, offsets("rep", 10, 10, 4, 4))
	}
	if got := w.Of(0); got != 0 {
		t.Fatalf("sessions partition 0 released to %d while a record for it is in an open transaction", got)
	}
	if got := w.Of(1); got < 18_000 {
		t.Fatalf("sessions partition 1 held at %d by a transaction none of whose records go there", got)
	}
	// The transaction commits (marker at 9: high watermark 10) and both groups read past it.
	for at := int64(21_000); at <= 24_000; at += 1000 {
		channels := []kafkaedge.PartitionOffsets{held("a", 0, 10, 10), held("b", 0, 7, 7), held("b", 1, 3, 3)}
		w.Observe(at, channels, nil, offsets("rep", 12, 12, 4, 4))
	}
	if got := w.Of(0); got < 20_000 {
		t.Fatalf("once the transaction ended and was read, partition 0 advances: %d", got)
	}
}

// Where the held records go is not known (not read yet, too many to read): they hold every sessions
// partition, as does a partition missing from the held map.
func TestWatermarkUnknownHeldRecordsHoldEverything(t *testing.T) {
	for name, h := range map[string]map[partitionKey]Held{
		"all":     {{"a", 0}: {All: true}},
		"missing": nil,
	} {
		w := NewWatermarks()
		for at := int64(1000); at <= 10_000; at += 1000 {
			w.Observe(at, []kafkaedge.PartitionOffsets{held("a", 0, 5, 9)}, h, offsets("rep", 10, 10, 4, 4))
		}
		if w.Of(0) != 0 || w.Of(1) != 0 {
			t.Fatalf("%s: records of unknown destination must hold every partition: %d, %d", name, w.Of(0), w.Of(1))
		}
	}
}

// The group read up to the last stable offset but not beyond: a snapshot's target for a partition the
// held records reach is the high watermark it had then, not a later one, and a record written after
// the snapshot (above its high watermark) does not hold it.
func TestWatermarkTargetIsTheSnapshotsHighWatermark(t *testing.T) {
	w := NewWatermarks()
	to0 := map[partitionKey]Held{{"a", 0}: {To: []int{0}}}
	w.Observe(1000, []kafkaedge.PartitionOffsets{held("a", 0, 5, 9)}, to0, offsets("rep", 10, 10))
	// A new transaction opened at 12: the group is at 12, past the first snapshot's 9.
	w.Observe(2000, []kafkaedge.PartitionOffsets{held("a", 0, 12, 14)}, to0, offsets("rep", 10, 10))
	w.Observe(3000, []kafkaedge.PartitionOffsets{held("a", 0, 12, 14)}, to0, offsets("rep", 10, 10))
	if got := w.Of(0); got != 1000 {
		t.Fatalf("the snapshot at 1000 passed (committed 12 >= its high watermark 9), the later ones not: %d", got)
	}
}

// The peeker reads each held offset once, keeps what it learnt as the last stable offset moves (a
// destination found only below it is dropped), and holds everything for a partition it could not read
// or whose held range it has not read to the end yet.
func TestHeldPeekerFindsWhereHeldRecordsGo(t *testing.T) {
	reads := 0
	fail := false
	h := &heldPeeker{scans: map[partitionKey]*heldScan{},
		dest: func(rec stream.Record, n int) (int, bool) { return int(rec.Offset) % n, rec.Offset != 7 },
		read: func(_ context.Context, _ string, _ int, from, end int64, fn func(stream.Record) error) error {
			if fail {
				return errors.New("broker gone")
			}
			for o := from; o < end; o++ {
				reads++
				_ = fn(stream.Record{Offset: o})
			}
			return nil
		}}
	if got := h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, 4, 5)}, 3)[partitionKey{"a", 0}]; !slices.Equal(got.To, []int{1}) || got.All {
		t.Fatalf("offset 4 goes to partition 1: %+v", got)
	}
	got := h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, 4, 8), held("b", 0, 3, 3)}, 3)
	if !slices.Equal(got[partitionKey{"a", 0}].To, []int{0, 1, 2}) || reads != 4 {
		t.Fatalf("offsets 5 and 6 read once more, 7 touches no session: %+v after %d reads", got, reads)
	}
	if _, ok := got[partitionKey{"b", 0}]; ok {
		t.Fatal("a partition without held records is not in the answer")
	}
	got = h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, 7, 8)}, 3)
	if g := got[partitionKey{"a", 0}]; len(g.To) != 0 || g.All || reads != 4 {
		t.Fatalf("the last stable offset moved to 7: nothing read again, 7 goes nowhere: %+v after %d reads", g, reads)
	}
	fail = true
	if g := h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, 9, 12)}, 3)[partitionKey{"a", 0}]; !g.All {
		t.Fatalf("unread held records hold every partition: %+v", g)
	}
	fail = false
	if g := h.held(context.Background(), []kafkaedge.PartitionOffsets{held("a", 0, 9, 12)}, 3)[partitionKey{"a", 0}]; g.All || !slices.Equal(g.To, []int{0, 1, 2}) || reads != 7 {
		t.Fatalf("read once the broker is back: %+v after %d reads", g, reads)
	}
	long := held("a", 0, 20, 20+heldChunk+1)
	if g := h.held(context.Background(), []kafkaedge.PartitionOffsets{long}, 3)[partitionKey{"a", 0}]; !g.All || reads != 7+heldChunk {
		t.Fatalf("a held range over one chunk is read in part and holds every partition: %+v after %d reads", g, reads)
	}
	if g := h.held(context.Background(), []kafkaedge.PartitionOffsets{long}, 3)[partitionKey{"a", 0}]; g.All || !slices.Equal(g.To, []int{0, 1, 2}) || reads != 8+heldChunk {
		t.Fatalf("read to the end at the next reading, it holds where its records go: %+v after %d reads", g, reads)
	}
	if g := h.held(context.Background(), []kafkaedge.PartitionOffsets{long}, 0)[partitionKey{"a", 0}]; !g.All {
		t.Fatalf("with the repartition topic's partitions unknown, every partition is held: %+v", g)
	}
}

package inbound

import (
	"testing"

	"github.com/cimstream/cimstream/internal/kafkaedge"
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
	w.Observe(1000, offsets("in", 8, 10, 5, 5), offsets("rep", 20, 20, 7, 7))
	if w.Of(0) != 0 || w.Of(1) != 0 {
		t.Fatal("nothing passed yet")
	}
	// t=2000: ingest reached 10 and 5 (snapshot 1000 passes stage 1); repartition now ends at 25 and 9,
	// the sessions stage committed 22 and 9.
	w.Observe(2000, offsets("in", 10, 12, 5, 5), offsets("rep", 22, 25, 9, 9))
	if w.Of(0) != 0 {
		t.Fatalf("partition 0 has not applied up to 25: %d", w.Of(0))
	}
	if w.Of(1) != 1000 {
		t.Fatalf("partition 1 applied everything of snapshot 1000: %d", w.Of(1))
	}
	// t=3000: ingest at 12 (snapshot 2000 passes), sessions committed 25 and 11.
	w.Observe(3000, offsets("in", 12, 12, 5, 5), offsets("rep", 25, 27, 11, 11))
	if w.Of(0) != 1000 || w.Of(1) != 2000 {
		t.Fatalf("watermarks %d, %d; want 1000, 2000", w.Of(0), w.Of(1))
	}
}

// An ingest partition that stays behind (a stalled member, an outage) holds every watermark back, however
// long the wall clock runs; a connector topic found after the snapshot must be caught up too.
func TestWatermarkHeldByAStalledPartition(t *testing.T) {
	w := NewWatermarks()
	for at := int64(1000); at <= 60_000; at += 1000 {
		w.Observe(at, offsets("in", 3, 4, 9, 9), offsets("rep", 50, 50))
	}
	if w.Of(0) != 0 {
		t.Fatalf("a stalled ingest partition must hold the watermark: %d", w.Of(0))
	}
	w.Observe(61_000, offsets("in", 4, 4, 9, 9), offsets("rep", 50, 50))
	w.Observe(62_000, offsets("in", 4, 4, 9, 9), offsets("rep", 50, 50))
	if got := w.Of(0); got < 1000 || got > 61_000 {
		t.Fatalf("once caught up the watermark advances to a snapshot's time: %d", got)
	}

	w2 := NewWatermarks()
	w2.Observe(1000, offsets("in", 4, 4), offsets("rep", 5, 5))
	late := append(offsets("in", 4, 4), kafkaedge.PartitionOffsets{Topic: "new", Partition: 0, Committed: 0, End: 30})
	w2.Observe(2000, late, offsets("rep", 5, 5))
	w2.Observe(3000, late, offsets("rep", 5, 5))
	if w2.Of(0) != 0 {
		t.Fatalf("a new connector topic with unprocessed records holds the watermark: %d", w2.Of(0))
	}
}

// The number of snapshots waited on is bounded, and the watermark never goes back.
func TestWatermarkIsBoundedAndMonotonic(t *testing.T) {
	w := NewWatermarks()
	for at := int64(1); at <= 1000; at++ {
		w.Observe(at, offsets("in", 0, at), offsets("rep", 0, at))
	}
	if len(w.ingest) > maxPendingMarks || len(w.pending[0]) > maxPendingMarks {
		t.Fatalf("pending %d / %d", len(w.ingest), len(w.pending[0]))
	}
	prev := int64(0)
	for at := int64(1001); at <= 1020; at++ {
		w.Observe(at, offsets("in", 2000, 2000), offsets("rep", 2000, 2000))
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
		w.Observe(at, offsets("in", 3, 4, 9, 9), offsets("rep", 50, 50))
	}
	w.Observe(11_000, offsets("in", 3, 4, 9, 9)[1:], offsets("rep", 50, 50))
	w.Observe(12_000, offsets("in", 3, 4, 9, 9), offsets("rep", 50, 50))
	if got := w.Of(0); got != 0 {
		t.Fatalf("a stalled partition missing from one reading released the watermark to %d", got)
	}
	// A topic gone from the readings (deleted) holds nothing back.
	w.Observe(13_000, offsets("other", 1, 1), offsets("rep", 50, 50))
	w.Observe(14_000, offsets("other", 1, 1), offsets("rep", 50, 50))
	if got := w.Of(0); got == 0 {
		t.Fatal("a deleted topic must not hold the watermark for good")
	}
}

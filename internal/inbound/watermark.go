package inbound

import (
	"slices"
	"sync"

	"github.com/cimstream/cimstream/internal/kafkaedge"
)

// maxPendingMarks bounds the snapshots a Watermarks waits on per phase and sessions partition; a newer
// one is taken only when there is room, so a lagging stage slows the watermark down but never holds it
// at an old snapshot.
const maxPendingMarks = 4

// Watermarks tells, per sessions partition (the repartition partition p, and partition p of every
// co-partitioned channel topic), a time before which every connector record that can reach it is known
// to have been applied by the sessions stage: the upstream half of record time for proactive expiry. It
// follows both inbound groups through the broker (committed offsets, last stable offsets and high
// watermarks), so every instance comes to the same answer, and it stops advancing while records that
// can reach the partition are held (the broker unreachable, an ingest member stalled, a backlog, an
// open transaction).
//
// A snapshot taken at time T reads each channel partition q's last stable offset L and high watermark
// H, and where L < H the sessions partitions the records in [L, H) go to (see Held). It passes stage 1
// for sessions partition p once the offsets committed on every q reached q's target for p: H when a
// record in [L, H) may go to p, else L. Below the target every record produced before T was applied
// (fast path) or written to the repartition topic; above it, until H, nothing of p's. It then takes the
// repartition end R[p] (read after those commits) and passes p once the sessions stage committed R[p]
// there: every record produced before T that can reach p was applied on p. An open transaction on q
// thus holds only the sessions partitions its records (and those written after its first) go to.
type Watermarks struct {
	mu      sync.Mutex
	ingest  map[int][]*ingestMark // by sessions partition: snapshots stage 1 has not passed for it
	pending map[int][]sessionMark
	marks   map[int]int64
}

// Held is where the records a channel partition holds above its last stable offset go: the sessions
// partitions To, or every one (All: not known).
type Held struct {
	To  []int
	All bool
}

type ingestMark struct {
	at   int64
	ends []kafkaedge.PartitionOffsets
	held map[partitionKey]Held
}

type sessionMark struct {
	at  int64
	end int64
}

// NewWatermarks returns watermarks at 0 (nothing known yet).
func NewWatermarks() *Watermarks {
	return &Watermarks{ingest: map[int][]*ingestMark{}, pending: map[int][]sessionMark{}, marks: map[int]int64{}}
}

// Of returns partition's watermark (epoch ms, 0 when none yet).
func (w *Watermarks) Of(partition int) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marks[partition]
}

// Observe takes one reading: at is the processing time (epoch ms) before it began; channels holds the
// offsets on the connector topics (the further of both groups), held where the records above a channel
// partition's last stable offset go (a partition with End < High missing from it holds every sessions
// partition), sessions the sessions group's offsets on the repartition topic, read after the others.
func (w *Watermarks) Observe(at int64, channels []kafkaedge.PartitionOffsets, held map[partitionKey]Held, sessions []kafkaedge.PartitionOffsets) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mark := &ingestMark{at: at, ends: channels, held: held}
	for _, o := range sessions {
		p := o.Partition
		q := w.ingest[p]
		for len(q) > 0 && passed(q[0], channels, held, p) {
			if s := w.pending[p]; len(s) < maxPendingMarks {
				w.pending[p] = append(s, sessionMark{at: q[0].at, end: o.End})
			}
			q = q[1:]
		}
		s := w.pending[p]
		for len(s) > 0 && o.Committed >= s[0].end {
			w.marks[p] = max(w.marks[p], s[0].at)
			s = s[1:]
		}
		w.pending[p] = s
		if len(q) < maxPendingMarks {
			q = append(q, mark)
		}
		w.ingest[p] = q
	}
}

type partitionKey struct {
	topic     string
	partition int
}

// target is how far the committed offset of o must be for sessions partition p: its high watermark when
// a record it holds above the last stable offset may go to p, else the last stable offset.
func target(o kafkaedge.PartitionOffsets, held map[partitionKey]Held, p int) int64 {
	if o.High <= o.End {
		return o.End
	}
	h, known := held[partitionKey{o.Topic, o.Partition}]
	if !known || h.All || slices.Contains(h.To, p) {
		return o.High
	}
	return o.End
}

// passed reports whether the offsets now reached every target of a snapshot for sessions partition p. A
// partition the snapshot did not know (a connector topic found since) must be caught up to its current
// target. A topic no longer in the reading (deleted, or no longer matched) holds nothing back; a
// partition of a topic still read must be in the reading (GroupOffsets readings are whole).
func passed(snapshot *ingestMark, now []kafkaedge.PartitionOffsets, held map[partitionKey]Held, p int) bool {
	current := make(map[partitionKey]kafkaedge.PartitionOffsets, len(now))
	topics := map[string]bool{}
	for _, o := range now {
		current[partitionKey{o.Topic, o.Partition}] = o
		topics[o.Topic] = true
	}
	known := make(map[partitionKey]bool, len(snapshot.ends))
	for _, e := range snapshot.ends {
		k := partitionKey{e.Topic, e.Partition}
		known[k] = true
		o, ok := current[k]
		switch {
		case !ok && topics[e.Topic]:
			return false
		case ok && o.Committed < target(e, snapshot.held, p):
			return false
		}
	}
	for k, o := range current {
		if !known[k] && o.Committed < target(o, held, p) {
			return false
		}
	}
	return true
}

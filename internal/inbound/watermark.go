package inbound

import (
	"sync"

	"github.com/cimstream/cimstream/internal/kafkaedge"
)

// maxPendingMarks bounds the snapshots a Watermarks waits on per phase; a newer one is taken only when
// there is room, so a lagging stage slows the watermark down but never holds it at an old snapshot.
const maxPendingMarks = 4

// Watermarks tells, per repartition partition, a time before which every connector record is known to
// have been applied by the sessions stage: the upstream half of record time for proactive expiry. It
// follows both inbound groups through the broker (committed and end offsets), so every instance comes
// to the same answer, and it stops advancing while records are held (the broker unreachable, an ingest
// member stalled, a backlog still being worked through).
//
// A snapshot taken at time T with the connector partitions' end offsets E passes the ingest stage once
// its committed offsets reach E: every record produced before T was written to the repartition topic.
// It then takes the repartition end offsets R (read after those commits) and passes partition p once
// the sessions stage committed R[p] there: every record produced before T was applied on p.
type Watermarks struct {
	mu      sync.Mutex
	ingest  []ingestMark
	pending map[int][]sessionMark
	marks   map[int]int64
}

type ingestMark struct {
	at   int64
	ends []kafkaedge.PartitionOffsets
}

type sessionMark struct {
	at  int64
	end int64
}

// NewWatermarks returns watermarks at 0 (nothing known yet).
func NewWatermarks() *Watermarks {
	return &Watermarks{pending: map[int][]sessionMark{}, marks: map[int]int64{}}
}

// Of returns partition's watermark (epoch ms, 0 when none yet).
func (w *Watermarks) Of(partition int) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.marks[partition]
}

// Observe takes one reading: at is the processing time (epoch ms) before it began; ingest holds the
// ingest group's offsets on the connector topics, sessions the sessions group's on the repartition
// topic, read after ingest's.
func (w *Watermarks) Observe(at int64, ingest, sessions []kafkaedge.PartitionOffsets) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.ingest) > 0 && passed(w.ingest[0].ends, ingest) {
		done := w.ingest[0]
		w.ingest = w.ingest[1:]
		for _, o := range sessions {
			if q := w.pending[o.Partition]; len(q) < maxPendingMarks {
				w.pending[o.Partition] = append(q, sessionMark{at: done.at, end: o.End})
			}
		}
	}
	for _, o := range sessions {
		q := w.pending[o.Partition]
		for len(q) > 0 && o.Committed >= q[0].end {
			w.marks[o.Partition] = max(w.marks[o.Partition], q[0].at)
			q = q[1:]
		}
		w.pending[o.Partition] = q
	}
	if len(w.ingest) < maxPendingMarks {
		w.ingest = append(w.ingest, ingestMark{at: at, ends: ingest})
	}
}

type partitionKey struct {
	topic     string
	partition int
}

// passed reports whether the ingest group's offsets now reached every end of a snapshot. A partition
// the snapshot did not know (a connector topic found since) must be caught up to its current end. A
// topic no longer in the reading (deleted, or no longer matched) holds nothing back; a partition of a
// topic still read must be in the reading (GroupOffsets readings are whole).
func passed(snapshot, now []kafkaedge.PartitionOffsets) bool {
	current := make(map[partitionKey]kafkaedge.PartitionOffsets, len(now))
	topics := map[string]bool{}
	for _, o := range now {
		current[partitionKey{o.Topic, o.Partition}] = o
		topics[o.Topic] = true
	}
	known := make(map[partitionKey]bool, len(snapshot))
	for _, e := range snapshot {
		k := partitionKey{e.Topic, e.Partition}
		known[k] = true
		o, ok := current[k]
		switch {
		case !ok && topics[e.Topic]:
			return false
		case ok && o.Committed < e.End:
			return false
		}
	}
	for k, o := range current {
		if !known[k] && o.Committed < o.End {
			return false
		}
	}
	return true
}

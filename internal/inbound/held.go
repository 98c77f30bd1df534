package inbound

import (
	"bytes"
	"context"
	"maps"
	"slices"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stream"
)

// heldChunk bounds the offsets read above one channel partition's last stable offset per reading: a
// long held range is read over several readings (holding every sessions partition until the scan has
// reached the high watermark), and from then on only what was written since the last reading.
const heldChunk = 10_000

// heldScan is what is known of the records above one channel partition's last stable offset.
type heldScan struct {
	partitions int           // the repartition topic's partition count the destinations are of
	from       int64         // the last stable offset of the last reading: nothing below it is kept
	next       int64         // the offset after what was read
	last       map[int]int64 // by sessions partition: the highest offset read that goes there
}

// drop forgets what lies below the last stable offset lso (the transactions there ended): a sessions
// partition stays held only if an offset read at or above lso goes there. Reading goes on from where
// it stopped, or from lso if that is further.
func (s *heldScan) drop(lso int64) {
	s.from = lso
	s.next = max(s.next, lso)
	maps.DeleteFunc(s.last, func(_ int, at int64) bool { return at < lso })
}

// heldPeeker finds where the records an open transaction holds back will go, so that it holds only
// those sessions partitions (see Watermarks). Each held offset is read and sent through stage 1's
// decision once per instance: what was learnt (per sessions partition, the last offset going there) is
// kept while the last stable offset moves, and only offsets not read yet are read, at most heldChunk
// per partition and reading. The scan starts again from the last stable offset when the repartition
// topic's partition count changes (the destinations were of the old count) or the partition went back
// (a recreated topic, a truncated log).
type heldPeeker struct {
	read  func(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error
	dest  func(rec stream.Record, partitions int) (int, bool)
	scans map[partitionKey]*heldScan
}

// held gives, for each channel partition with records above its last stable offset, the sessions
// partitions (of partitions) they go to: every one while they are not all read yet (a partition that
// could not be read, a held range longer than one chunk).
func (h *heldPeeker) held(ctx context.Context, channels []kafkaedge.PartitionOffsets, partitions int) map[partitionKey]Held {
	out := map[partitionKey]Held{}
	for _, o := range channels {
		if o.High <= o.End {
			continue
		}
		k := partitionKey{o.Topic, o.Partition}
		if partitions <= 0 {
			out[k] = Held{All: true}
			continue
		}
		s := h.scans[k]
		if s == nil || s.partitions != partitions || o.End < s.from || o.High < s.next {
			s = &heldScan{partitions: partitions, from: o.End, next: o.End, last: map[int]int64{}}
			h.scans[k] = s
		}
		s.drop(o.End)
		if s.next < o.High {
			end := min(o.High, s.next+heldChunk)
			err := h.read(ctx, o.Topic, o.Partition, s.next, end, func(rec stream.Record) error {
				if rec.Offset < s.next || rec.Offset >= end {
					return nil
				}
				if p, ok := h.dest(rec, partitions); ok {
					s.last[p] = rec.Offset
				}
				s.next = rec.Offset + 1
				return nil
			})
			if err == nil {
				s.next = end // what is left below it are markers
			}
		}
		out[k] = Held{To: slices.Sorted(maps.Keys(s.last)), All: s.next < o.High}
	}
	for k := range h.scans {
		if _, ok := out[k]; !ok {
			delete(h.scans, k) // nothing held there any more
		}
	}
	return out
}

// destination is the sessions partition (of partitions) a connector record goes to, as stage 1 and the
// fast path send it: false for one that touches no session (a receipt, a reply without channelData, a
// record that will be dead-lettered).
func (p *Pipeline) destination(n *Normalizer) func(rec stream.Record, partitions int) (int, bool) {
	return func(rec stream.Record, partitions int) (int, bool) {
		res := n.Process(rec)
		if !toTopic(res, p.cfg.Topics.Repartition) || bytes.HasPrefix(res.Outputs[0].Key, []byte(conversationKeyPrefix)) {
			return 0, false
		}
		return p.homeOf(res.Outputs[0], partitions), true
	}
}

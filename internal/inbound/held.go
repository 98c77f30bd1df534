package inbound

import (
	"bytes"
	"context"
	"maps"
	"slices"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stream"
)

// maxHeldPeek bounds the offsets looked at above a partition's last stable offset: past it the held
// records are taken to go everywhere (safe, only slower to expire) rather than read every second.
const maxHeldPeek = 10_000

// heldScan is what is known of the records above one channel partition's last stable offset from.
type heldScan struct {
	from, next int64 // the last stable offset it began at; the offset after what was read
	to         map[int]bool
	all        bool
}

// heldPeeker finds where the records an open transaction holds back will go, so that it holds only
// those sessions partitions (see Watermarks). Each offset is read once while the last stable offset
// stays where it is; when it moves (the transaction ended), the partition is read again from there.
type heldPeeker struct {
	read  func(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error
	dest  func(rec stream.Record, partitions int) (int, bool)
	scans map[partitionKey]*heldScan
}

// held gives, for each channel partition with records above its last stable offset, the sessions
// partitions (of partitions) they go to. A partition that could not be read holds every one.
func (h *heldPeeker) held(ctx context.Context, channels []kafkaedge.PartitionOffsets, partitions int) map[partitionKey]Held {
	out := map[partitionKey]Held{}
	for _, o := range channels {
		if o.High <= o.End {
			continue
		}
		k := partitionKey{o.Topic, o.Partition}
		s := h.scans[k]
		if s == nil || s.from != o.End {
			s = &heldScan{from: o.End, next: o.End, to: map[int]bool{}}
			h.scans[k] = s
		}
		if o.High-s.from > maxHeldPeek || partitions <= 0 {
			s.all = true
		}
		if !s.all && s.next < o.High {
			err := h.read(ctx, o.Topic, o.Partition, s.next, o.High, func(rec stream.Record) error {
				if p, ok := h.dest(rec, partitions); ok {
					s.to[p] = true
				}
				s.next = rec.Offset + 1
				return nil
			})
			if err != nil {
				out[k] = Held{All: true}
				continue
			}
			s.next = o.High // what is left below it are markers
		}
		out[k] = Held{To: slices.Sorted(maps.Keys(s.to)), All: s.all}
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
		if len(res.Reject) > 0 || len(res.Outputs) != 1 {
			return 0, false
		}
		o := res.Outputs[0]
		if o.Topic != p.cfg.Topics.Repartition || bytes.HasPrefix(o.Key, []byte(conversationKeyPrefix)) {
			return 0, false
		}
		key := o.HashKey
		if key == nil {
			key = o.Key
		}
		return p.home(key, partitions), true
	}
}

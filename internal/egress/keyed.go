package egress

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// keyed runs the deliveries of one partition: per record key one message at a time in offset order,
// different keys in parallel. Records settle in any order; the committable offset moves only over a
// prefix of settled records (stage.Offsets), so a crash repeats at most the records held, never skips one.
// The records settled above that prefix go into the commit's metadata (commit), as Parallel Consumer
// does, so a new owner skips them (skip) instead of delivering them again.
type keyed struct {
	deliver func(ctx context.Context, rec stream.Record) (Verdict, bool)
	// record makes the verdict durable and calls done once it is (now, for nothing to write).
	record func(rec stream.Record, v Verdict, done func())
	// moved, when set, is told the committable offset (the next to read) whenever it moves, in order.
	moved func(next int64)
	// settled is told each settled record (the budget's bytes, metrics).
	settled func(rec stream.Record, v Verdict)
	// load re-reads a record kept as a stub (offset and key only) when its turn comes; false when ctx
	// ended first.
	load    func(ctx context.Context, stub stream.Record) (stream.Record, bool)
	max     int   // records held in full at most
	maxSize int64 // bytes held at most (0: no bound); one record is always let in
	// perKey is how many records of one key are held in full; the key's later records are kept as stubs
	// (at most maxStubs of them per partition), so a customer with a long backlog cannot fill the bound
	// and stop the fetching for the other customers of the partition (Parallel Consumer does the same).
	perKey   int
	maxStubs int
	busy     *keyBusy // the keys in flight on the channel's other partitions too (nil: this one only)

	mu      sync.Mutex
	offsets *stage.Offsets
	queues  map[string][]stream.Record // per key, in offset order; present while its worker runs
	held    map[int64]stream.Record    // every record not yet settled
	stubs   map[int64]bool             // the records of held kept without their value, to be re-read
	base    int64                      // the first offset tracked (-1 before): where this owner began
	size    int64                      // bytes of the records held
	space   chan struct{}              // a token whenever held drops
	workers sync.WaitGroup

	// prior is the offsets the last commit's metadata listed as settled: they stay in this owner's commits
	// until the committed offset passes them, whether or not this owner fetched them.
	prior map[int64]bool
}

func newKeyed(max int) *keyed {
	return &keyed{max: max, perKey: max, maxStubs: 100 * max, offsets: stage.NewOffsets(),
		queues: map[string][]stream.Record{}, held: map[int64]stream.Record{}, stubs: map[int64]bool{},
		base: -1, space: make(chan struct{}, 1)}
}

// waitSpace blocks while max records are held; false when ctx ended.
func (k *keyed) waitSpace(ctx context.Context) bool {
	for {
		k.mu.Lock()
		full := len(k.held) - len(k.stubs)
		ok := full == 0 || (full < k.max && len(k.stubs) < k.maxStubs && (k.maxSize <= 0 || k.size < k.maxSize))
		k.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-k.space:
		case <-ctx.Done():
			return false
		}
	}
}

// add takes a fetched record: it queues behind its key's earlier records, or starts its key's worker.
// It reports whether the record was kept as a stub (its bytes are no longer held).
func (k *keyed) add(ctx context.Context, rec stream.Record) (stub bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.track(rec.Offset)
	key := queueKey(rec)
	q, running := k.queues[key]
	if stub = len(q) >= k.perKey && k.load != nil; stub {
		rec = stream.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Time: rec.Time}
		k.stubs[rec.Offset] = true
	} else {
		k.size += int64(rec.Size())
	}
	k.held[rec.Offset] = rec
	k.queues[key] = append(q, rec)
	if !running {
		k.workers.Add(1)
		go k.work(ctx, key)
	}
	return stub
}

// work delivers key's records one after the other until its queue is empty or ctx ends.
func (k *keyed) work(ctx context.Context, key string) {
	defer k.workers.Done()
	for {
		if !k.one(ctx, key) {
			return // the partition is stopping: the key's records left stay unsettled, so uncommitted
		}
		k.mu.Lock()
		q := k.queues[key][1:]
		if len(q) == 0 {
			delete(k.queues, key)
			k.mu.Unlock()
			return
		}
		k.queues[key] = q
		k.mu.Unlock()
	}
}

// one delivers the head of key's queue and waits until it is settled; false when ctx ended first.
func (k *keyed) one(ctx context.Context, key string) bool {
	// The key may also be on another partition of the channel (partitions added, another partitioner):
	// one message of it at a time across them.
	if k.busy != nil {
		if !k.busy.acquire(ctx, key) {
			return false
		}
		defer k.busy.release(key)
	}
	k.mu.Lock()
	rec := k.queues[key][0]
	stub := k.stubs[rec.Offset]
	k.mu.Unlock()
	if stub {
		full, ok := k.load(ctx, rec)
		if !ok {
			return false
		}
		k.mu.Lock()
		delete(k.stubs, rec.Offset)
		k.held[rec.Offset], k.queues[key][0], rec = full, full, full
		k.size += int64(full.Size())
		k.mu.Unlock()
	}
	v, ok := k.deliver(ctx, rec)
	if !ok {
		return false
	}
	// The next message of the key goes out once this one is settled (its outcome acknowledged), so the
	// commit never lists a later message of the key as settled while an earlier one is to be sent again.
	settled := make(chan struct{})
	k.record(rec, v, func() { k.settle(rec, v); close(settled) })
	select {
	case <-settled:
		return true
	case <-ctx.Done():
		return false
	}
}

// keyBusy is the keys with a message in flight, shared by a channel's partitions within an instance.
type keyBusy struct {
	mu   sync.Mutex
	busy map[string]chan struct{} // closed when the key is free again
}

func newKeyBusy() *keyBusy { return &keyBusy{busy: map[string]chan struct{}{}} }

// acquire waits until key is free and takes it; false when ctx ended first.
func (b *keyBusy) acquire(ctx context.Context, key string) bool {
	for {
		b.mu.Lock()
		free, taken := b.busy[key]
		if !taken {
			b.busy[key] = make(chan struct{})
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		select {
		case <-free:
		case <-ctx.Done():
			return false
		}
	}
}

func (b *keyBusy) release(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.busy[key])
	delete(b.busy, key)
}

func (k *keyed) settle(rec stream.Record, v Verdict) {
	k.mu.Lock()
	if k.offsets.Settle(rec.Offset) && k.moved != nil {
		next, _ := k.offsets.Committable()
		k.moved(next)
	}
	if _, ok := k.held[rec.Offset]; ok {
		k.size -= int64(rec.Size())
		delete(k.held, rec.Offset)
	}
	k.mu.Unlock()
	select {
	case k.space <- struct{}{}:
	default:
	}
	k.settled(rec, v)
}

// track adds an offset in flight (under mu).
func (k *keyed) track(offset int64) {
	if k.base < 0 {
		k.base = offset
	}
	k.offsets.Track(offset)
}

// skip settles a record that was settled before a restart (the commit metadata says so): it is not
// delivered again.
func (k *keyed) skip(rec stream.Record) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.track(rec.Offset)
	if k.offsets.Settle(rec.Offset) && k.moved != nil {
		next, _ := k.offsets.Committable()
		k.moved(next)
	}
}

// commit is what to commit now: the committable offset, with the settled offsets above it as metadata;
// false before anything settled.
func (k *keyed) commit() (stage.OffsetMeta, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	next, ok := k.offsets.Committable()
	if !ok {
		// Nothing settled from the start yet: the start itself, so what settled above it is kept.
		if next, ok = k.base, k.base >= 0 && len(k.settledAbove(k.base)) > 0; !ok {
			return stage.OffsetMeta{}, false
		}
	}
	return stage.OffsetMeta{Offset: next, Metadata: EncodeSettled(next, k.settledAbove(next))}, true
}

// settledAbove is the offsets settled above next, this owner's and those of the last commit still above
// it, sorted (under mu).
func (k *keyed) settledAbove(next int64) []int64 {
	above := k.offsets.SettledAbove()
	if len(k.prior) == 0 {
		return above
	}
	seen := make(map[int64]bool, len(above))
	for _, off := range above {
		seen[off] = true
	}
	for off := range k.prior {
		switch {
		case off < next:
			delete(k.prior, off)
		case !seen[off]:
			above = append(above, off)
		}
	}
	slices.Sort(above)
	return above
}

// oldest is the record time of the oldest record not settled, and false when none is held.
func (k *keyed) oldest() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	off, ok := k.offsets.Oldest()
	if !ok {
		return time.Time{}, false
	}
	return k.held[off].Time, true
}

// unsettled is every record held in full and not settled.
func (k *keyed) unsettled() []stream.Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]stream.Record, 0, len(k.held))
	for off, r := range k.held {
		if !k.stubs[off] {
			out = append(out, r)
		}
	}
	return out
}

// wait returns when every worker has stopped.
func (k *keyed) wait() { k.workers.Wait() }

// queueKey is the queue of rec: its record key, the customer; for a record without one, the customer the
// value names (header.channelData.channelCustomerIdentifier), or else a queue of its own, so keyless
// records of different customers do not wait behind each other.
func queueKey(rec stream.Record) string {
	if len(rec.Key) > 0 {
		return string(rec.Key)
	}
	var m struct {
		Header struct {
			ChannelData struct {
				ChannelCustomerIdentifier string `json:"channelCustomerIdentifier"`
			} `json:"channelData"`
		} `json:"header"`
	}
	if json.Unmarshal(rec.Value, &m) == nil && m.Header.ChannelData.ChannelCustomerIdentifier != "" {
		return m.Header.ChannelData.ChannelCustomerIdentifier
	}
	return fmt.Sprintf("\x00%d/%d", rec.Partition, rec.Offset)
}

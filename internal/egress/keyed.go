package egress

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// keyed is the stage.Async handler of one partition: per record key one message at a time in offset
// order, different keys in parallel. Records settle in any order; the runtime commits only over a prefix
// of settled records, with the settled ones above it in the commit's metadata, so a crash repeats at
// most the records held, never skips one.
type keyed struct {
	deliver func(ctx context.Context, rec stream.Record) (Answer, bool)
	// result is the Result that settles a decided message (the records to write, the dead letter).
	result func(rec stream.Record, v Answer) stream.Result
	// settled is told each settled record and how long it took from its fetch (metrics).
	settled func(rec stream.Record, v Answer, took time.Duration)
	// load re-reads a record kept as a stub (offset and key only) when its turn comes; false when ctx
	// ended first.
	load    func(ctx context.Context, stub stream.Record) (stream.Record, bool)
	budget  *stage.Budget // the bytes of records re-read are taken from it until they settle
	max     int           // records held in full at most
	maxSize int64         // bytes held at most (0: no bound); one record is always let in
	// perKey is how many records of one key are held in full; the key's later records are kept as stubs
	// (at most maxStubs of them per partition), so a customer with a long backlog cannot fill the bound
	// and stop the fetching for the other customers of the partition (Parallel Consumer does the same).
	perKey   int
	maxStubs int
	busy     *keyBusy // the keys in flight on the channel's other partitions too (nil: this one only)

	mu      sync.Mutex
	queues  map[string][]stream.Record // per key, in offset order; present while its worker runs
	held    map[int64]time.Time        // fetch time of every record not yet settled
	stubs   map[int64]bool             // the records of held kept without their value, to be re-read
	loaded  map[int64]int64            // bytes of re-read records taken from budget, until they settle
	size    int64                      // bytes of the records held in full
	space   chan struct{}              // a token whenever held drops
	workers sync.WaitGroup
}

func newKeyed(max int) *keyed {
	return &keyed{max: max, perKey: max, maxStubs: 100 * max,
		queues: map[string][]stream.Record{}, held: map[int64]time.Time{}, stubs: map[int64]bool{}, loaded: map[int64]int64{},
		space: make(chan struct{}, 1)}
}

// Admit implements stage.Async: it blocks while max records are held.
func (k *keyed) Admit(ctx context.Context) bool {
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

// Add implements stage.Async: the record queues behind its key's earlier records, or starts its key's
// worker. It reports false when the record was kept as a stub (its bytes are no longer held).
func (k *keyed) Add(ctx context.Context, rec stream.Record, settle stage.Settle) (held bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := queueKey(rec)
	q, running := k.queues[key]
	stub := len(q) >= k.perKey && k.load != nil
	if stub {
		rec = stream.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Time: rec.Time}
		k.stubs[rec.Offset] = true
	} else {
		k.size += int64(rec.Size())
	}
	k.held[rec.Offset] = time.Now()
	k.queues[key] = append(q, rec)
	if !running {
		k.workers.Add(1)
		go k.work(ctx, key, settle)
	}
	return !stub
}

// Wait implements stage.Async: it returns when every worker has stopped.
func (k *keyed) Wait() { k.workers.Wait() }

// Close gives back the bytes of records re-read and never settled: the next owner fetches them again.
func (k *keyed) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for off, n := range k.loaded {
		k.budget.Give(n)
		delete(k.loaded, off)
	}
}

// work delivers key's records one after the other until its queue is empty or ctx ends.
func (k *keyed) work(ctx context.Context, key string, settle stage.Settle) {
	defer k.workers.Done()
	for {
		if !k.one(ctx, key, settle) {
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
func (k *keyed) one(ctx context.Context, key string, settle stage.Settle) bool {
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
		k.budget.Take(int64(full.Size()))
		k.mu.Lock()
		delete(k.stubs, rec.Offset)
		k.queues[key][0], rec = full, full
		k.loaded[rec.Offset] = int64(full.Size())
		k.size += int64(full.Size())
		k.mu.Unlock()
	}
	v, ok := k.deliver(ctx, rec)
	if !ok {
		return false
	}
	// The next message of the key goes out once this one is settled (its outcome acknowledged), so the
	// commit never lists a later message of the key as settled while an earlier one is to be sent again.
	done := make(chan struct{})
	settle(rec, k.result(rec, v), func() { k.settle(rec, v); close(done) })
	select {
	case <-done:
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

// settle forgets a record whose Result was written.
func (k *keyed) settle(rec stream.Record, v Answer) {
	k.mu.Lock()
	fetched := k.held[rec.Offset]
	delete(k.held, rec.Offset)
	k.size -= int64(rec.Size())
	if n, ok := k.loaded[rec.Offset]; ok {
		k.budget.Give(n)
		delete(k.loaded, rec.Offset)
	}
	k.mu.Unlock()
	select {
	case k.space <- struct{}{}:
	default:
	}
	k.settled(rec, v, time.Since(fetched))
}

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

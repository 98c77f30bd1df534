package inbound

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
)

// The single-stage fast path. With inbound.fastPath on, the sessions stage consumes, beside the
// repartition topic, every channel topic with the repartition topic's partition count (co-partitioned).
// The range assignor gives partition p of all of them to one member, whose handlers of partition p share
// one session table (a slot). A record of such a topic that already sits on its home partition (the one
// the repartition topic would send it to: its channelCustomerIdentifier hashed with the Java client's
// partitioner) is normalized and enriched where it is, without the repartition hop; any other record is
// sent through the repartition topic as stage 1 would. A customer whose connector keys consistently by
// channelCustomerIdentifier with the standard partitioner always takes the same path, so its order holds.

// slot is the session state of one partition, shared by the sessions stage's handlers of that
// partition in one generation: the repartition topic's and each co-partitioned channel topic's.
type slot struct {
	// writes is held by the stage runtime from a handler's Process until its outputs are settled
	// (stage.Serialized): the handlers write the changelog and CCM partitions in the order they applied.
	writes sync.Mutex

	mu        sync.Mutex
	e         *Enricher
	failed    bool // the restore failed: acquire again
	users     int  // handlers holding the slot (guarded by homeTables.mu)
	abandoned bool

	// next is the repartition offset after the last one applied; target the repartition end offset that
	// must be applied before records are taken where they are (see homeHandler.ready).
	next, target int64
}

// applied moves past a processed repartition offset; s.mu is held.
func (s *slot) applied(offset int64) { s.next = max(s.next, offset+1) }

// homeTables are the slots of the sessions stage's current generation.
type homeTables struct {
	mu    sync.Mutex
	slots map[int]*slot
	// assigned are the repartition partitions of the current generation, with the offset each starts
	// at (negative: from the beginning).
	assigned map[int]int64
	// coPartitioned are the channel topics the sessions stage reads, which have the repartition topic's
	// partition count, partitions.
	coPartitioned []string
	partitions    int
}

func newHomeTables() *homeTables {
	return &homeTables{slots: map[int]*slot{}, assigned: map[int]int64{}}
}

// assign records a new generation's repartition partitions.
func (h *homeTables) assign(assigned map[int]int64) {
	h.mu.Lock()
	h.assigned = assigned
	h.mu.Unlock()
}

// setTopics records the co-partitioned channel topics and the repartition topic's partition count.
func (h *homeTables) setTopics(coPartitioned []string, partitions int) {
	h.mu.Lock()
	h.coPartitioned, h.partitions = coPartitioned, partitions
	h.mu.Unlock()
}

// owns reports whether records of partition p of channel topic may be taken there: the topic is
// co-partitioned and this member has repartition partition p in the current generation. It returns the
// repartition topic's partition count.
func (h *homeTables) owns(topic string, p int) (partitions int, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, assigned := h.assigned[p]
	return h.partitions, assigned && slices.Contains(h.coPartitioned, topic) && p < h.partitions
}

func (h *homeTables) start(p int) (offset int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	offset, ok = h.assigned[p]
	return offset, ok
}

// acquire returns partition p's slot, restoring its table with restore when this is the first handler
// of the generation to ask; backlog gives the repartition offsets [next, target) to drain first.
func (h *homeTables) acquire(p int, restore func() (*Enricher, error), backlog func() (next, target int64, err error)) (*slot, error) {
	for {
		h.mu.Lock()
		s := h.slots[p]
		if s != nil {
			s.users++
			h.mu.Unlock()
			s.mu.Lock()
			failed := s.failed
			s.mu.Unlock()
			if !failed {
				return s, nil
			}
			continue // its restore failed and it was removed: try ours
		}
		s = &slot{users: 1}
		s.mu.Lock()
		h.slots[p] = s
		h.mu.Unlock()
		e, err := restore()
		if err == nil {
			s.next, s.target, err = backlog()
		}
		if err != nil {
			s.failed = true
			s.mu.Unlock()
			h.mu.Lock()
			delete(h.slots, p)
			h.mu.Unlock()
			return nil, err
		}
		s.e = e
		s.mu.Unlock()
		return s, nil
	}
}

// release gives the slot up for one handler; it reports whether that was the last one (the caller
// then closes the table).
func (h *homeTables) release(p int, s *slot) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.users--
	if s.users > 0 {
		return false
	}
	if h.slots[p] == s {
		delete(h.slots, p)
	}
	return true
}

// homeHandler is the sessions stage's handler of partition p of a co-partitioned channel topic.
type homeHandler struct {
	n           *Normalizer
	p           *Pipeline
	s           *slot
	partition   int
	partitions  int // the repartition topic's
	repartition string
	observer    Observer
	fast        bool // the repartition backlog was applied: records on their home partition are taken here
}

func (h *homeHandler) Lock()   { h.s.writes.Lock() }
func (h *homeHandler) Unlock() { h.s.writes.Unlock() }

func (h *homeHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	home := make([]int, 0, len(batch))
	for i, rec := range batch {
		out[i] = h.n.Process(rec)
		if h.isHome(out[i]) {
			home = append(home, i)
		}
	}
	if len(home) > 0 && !h.ready() {
		home = home[:0] // through the repartition topic, behind what waits there
	}
	h.observer.Routed(len(home), repartitioned(out, h.repartition)-len(home))
	if len(home) == 0 {
		return out
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for _, i := range home {
		o := out[i].Outputs[0]
		// The record stage 1 would have written, as the sessions stage would have read it back.
		out[i] = h.s.e.Process(stream.Record{Topic: h.repartition, Partition: h.partition, Offset: -1,
			Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time})
	}
	return out
}

// isHome reports whether res is a record for the repartition topic whose partition there is this one.
func (h *homeHandler) isHome(res stream.Result) bool {
	if len(res.Reject) > 0 || len(res.Outputs) != 1 || res.Outputs[0].Topic != h.repartition {
		return false
	}
	o := res.Outputs[0]
	key := o.HashKey
	if key == nil {
		key = o.Key
	}
	return h.p.home(key, h.partitions) == h.partition
}

// ready reports whether records may be taken where they are: every repartition record of the partition
// is applied, those waiting when the generation began (a customer's older records, sent by an earlier
// generation or version) and those this handler sent there meanwhile, so none is overtaken. Until then
// records go through the repartition topic, behind them; once ready, the handler stays so for the
// generation (every record of its customers is then taken here).
func (h *homeHandler) ready() bool {
	if h.fast {
		return true
	}
	h.s.mu.Lock()
	applied := h.s.next >= h.s.target
	h.s.mu.Unlock()
	if !applied {
		return false
	}
	// What this handler sent through the repartition topic is acknowledged (a batch settles before the
	// next is processed): it is below the end offset read now.
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(h.p.cfg.Kafka.RequestTimeout, 10*time.Second))
	defer cancel()
	_, end, err := h.p.bounds(ctx, h.repartition, h.partition)
	if err != nil {
		return false
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.s.next >= end {
		h.fast = true
		return true
	}
	h.s.target = max(h.s.target, end)
	return false
}

func (h *homeHandler) Abandoned() {
	h.s.mu.Lock()
	h.s.abandoned = true
	h.s.mu.Unlock()
}

func (h *homeHandler) Close() { h.p.releaseSlot(h.partition, h.s) }

// releaseSlot gives s up for one handler; the last one closes its table and keeps it for a rebalance
// that hands the partition back, unless outputs it made were never written.
func (p *Pipeline) releaseSlot(partition int, s *slot) {
	if !p.homes.release(partition, s) {
		return
	}
	s.mu.Lock()
	abandoned := s.abandoned
	s.mu.Unlock()
	p.closeTable(s.e, partition, abandoned)
}

// backlog is the range of repartition offsets waiting on partition when its slot is made.
func (p *Pipeline) backlog(ctx context.Context, partition int) (next, target int64, err error) {
	start, ok := p.homes.start(partition)
	if !ok || !p.cfg.Inbound.FastPath {
		return 0, 0, nil // no repartition handler this generation, or no record is taken where it is
	}
	first, end, err := p.bounds(ctx, p.cfg.Topics.Repartition, partition)
	if err != nil {
		return 0, 0, err
	}
	if start < first { // none committed (negative), or deleted by retention: the reader starts at first
		start = first
	}
	return start, end, nil
}

// repartitioned counts the results that are a record for the repartition topic.
func repartitioned(results []stream.Result, topic string) int {
	n := 0
	for _, r := range results {
		if len(r.Reject) == 0 && len(r.Outputs) == 1 && r.Outputs[0].Topic == topic {
			n++
		}
	}
	return n
}

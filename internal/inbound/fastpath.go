package inbound

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
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
	// writes is held from a handler's Process until its outputs are settled (slotWrites): the handlers
	// write the changelog and CCM partitions in the order they applied.
	writes sync.Mutex

	mu        sync.Mutex
	e         *Enricher
	failed    bool // the restore failed: acquire again
	users     int  // handlers holding the slot (guarded by homeTables.mu)
	abandoned bool

	// next is the repartition offset after the last one applied, target the repartition end offset when
	// the slot was made: the records waiting then are applied once next reaches it.
	next, target int64
	// appliedFrom is the highest channel offset applied through the repartition topic, by source
	// ("topic/partition", from the records' source headers).
	appliedFrom map[string]int64
	// progress is closed (and replaced) whenever the repartition handler applied a batch.
	progress chan struct{}
}

func newSlot() *slot {
	return &slot{users: 1, appliedFrom: map[string]int64{}, progress: make(chan struct{})}
}

// applied records a processed repartition record; s.mu is held. A record replayed from the dead-letter
// topic carries the source headers of whatever record was dead-lettered: it tells nothing about how far
// its source partition's records were applied.
func (s *slot) applied(rec stream.Record) {
	s.next = max(s.next, rec.Offset+1)
	if _, replayed := rec.Header(stream.HeaderReplayOf); replayed {
		return
	}
	if src, ok := sourceHeaders(rec); ok {
		if prev, seen := s.appliedFrom[src.Source]; !seen || src.Offset > prev {
			s.appliedFrom[src.Source] = src.Offset
		}
	}
}

// progressed wakes the home handlers waiting for the repartition handler; s.mu is held.
func (s *slot) progressed() {
	close(s.progress)
	s.progress = make(chan struct{})
}

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

// startOffset is the offset repartition partition p starts at in the current generation (negative:
// from the beginning); false when this member does not have it.
func (h *homeTables) startOffset(p int) (offset int64, ok bool) {
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
		s = newSlot()
		s.mu.Lock()
		h.slots[p] = s
		h.mu.Unlock()
		// The backlog first: once a kept table is taken, a failure must not drop it.
		var err error
		if s.next, s.target, err = backlog(); err == nil {
			s.e, err = restore()
		}
		if err != nil {
			s.failed = true
			s.mu.Unlock()
			h.mu.Lock()
			delete(h.slots, p)
			h.mu.Unlock()
			return nil, err
		}
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
	slotUser
	n           *Normalizer
	source      string // "topic/partition" of its channel partition
	partitions  int    // the repartition topic's
	repartition string
	// routed is the highest offset of a record on its home partition this handler sent through the
	// repartition topic while it was not ready (-1: none).
	routed int64
	fast   bool // ready: records on their home partition are taken here for the rest of the generation
}

// homeWait bounds how long a home handler waits for the repartition records it must not overtake; a
// batch that waited in vain goes through the repartition topic (behind them, so in order).
const homeWait = time.Second

// lock waits (up to homeWait, or until the partition is given up) until the handler is ready, then
// takes the slot's write lock. The wait holds no lock, so the repartition handler goes on meanwhile; it
// does hold the batch's bytes of the memory budget. An empty batch (a Tick may follow) does not wait.
func (h *homeHandler) lock(ctx context.Context, batch []stream.Record) {
	if !h.fast && len(batch) > 0 {
		deadline := time.NewTimer(homeWait)
		defer deadline.Stop()
	wait:
		for {
			h.s.mu.Lock()
			ready, progress := h.readyLocked(), h.s.progress
			h.s.mu.Unlock()
			if ready {
				break
			}
			select {
			case <-progress:
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
	}
	h.s.writes.Lock()
}

func (h *homeHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	parsed := make([]*cim.Message, len(batch)) // the normalized values, decoded once
	home := make([]int, 0, len(batch))
	for i, rec := range batch {
		out[i], parsed[i] = h.n.process(rec, true)
		if h.isHome(out[i]) {
			home = append(home, i)
		}
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if len(home) > 0 && !h.readyLocked() {
		// Through the repartition topic, behind what waits there.
		h.routed = max(h.routed, batch[home[len(home)-1]].Offset)
		home = home[:0]
	}
	h.n.observer.Routed(len(home), repartitioned(out, h.repartition)-len(home))
	for _, i := range home {
		o := out[i].Outputs[0]
		// The record stage 1 would have written, as the sessions stage would have read it back.
		out[i] = h.s.e.ProcessMessage(stream.Record{Topic: h.repartition, Partition: h.partition, Offset: -1,
			Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}, parsed[i])
	}
	coalesceChangelog(out, h.s.e.changelog) // one state per key and batch: its latest
	return out
}

// isHome reports whether res is a record for the repartition topic whose partition there is this one.
func (h *homeHandler) isHome(res stream.Result) bool {
	return toTopic(res, h.repartition) && h.p.homeOf(res.Outputs[0], h.partitions) == h.partition
}

// homeOf is the partition (of partitions) of the repartition topic stage 1's record o goes to.
func (p *Pipeline) homeOf(o stream.Output, partitions int) int {
	if o.HashKey != nil {
		return p.home(o.HashKey, partitions)
	}
	return p.home(o.Key, partitions)
}

// readyLocked reports whether records may be taken where they are: the repartition records waiting when
// the generation began (a customer's older records, sent there by an earlier generation or version)
// are applied, and so are those this handler sent there since. Records other channel partitions send
// to the repartition topic have no order with this one's and are not waited for. Once ready, the
// handler stays so for the generation. h.s.mu is held.
func (h *homeHandler) readyLocked() bool {
	if h.fast || h.s.next < h.s.target {
		return h.fast
	}
	if applied, ok := h.s.appliedFrom[h.source]; h.routed < 0 || ok && applied >= h.routed {
		h.fast = true
	}
	return h.fast
}

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
	start, ok := p.homes.startOffset(partition)
	if !ok || !p.cfg.Inbound.FastPath {
		return 0, 0, nil // no repartition handler this generation, or no record is taken where it is
	}
	first, end, err := p.bounds(ctx, p.cfg.Topics.Repartition, partition)
	if err != nil {
		return 0, 0, err
	}
	// None committed (negative), or deleted by retention: the reader starts at first.
	return max(start, first), end, nil
}

// repartitioned counts the results that are a record for the repartition topic.
func repartitioned(results []stream.Result, topic string) int {
	n := 0
	for _, r := range results {
		if toTopic(r, topic) {
			n++
		}
	}
	return n
}

// toTopic reports whether r is stage 1's one record, for topic.
func toTopic(r stream.Result, topic string) bool {
	return len(r.Reject) == 0 && len(r.Outputs) == 1 && r.Outputs[0].Topic == topic
}

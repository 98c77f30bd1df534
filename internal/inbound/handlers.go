package inbound

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/stage"
	"github.com/cimstream/cimstream/internal/stream"
)

// newSessionsHandler builds a sessions-stage handler: of a repartition partition, or of a channel
// topic's partition the fast path takes. Partition p's handlers share p's session table, restored by
// the first of them. A channel partition whose repartition partition went to another member (the
// assignor did not co-partition them) sends every record through the repartition topic.
func (p *Pipeline) newSessionsHandler(ctx context.Context, topic string, partition int) (stage.Handler, error) {
	repartition := topic == p.cfg.Topics.Repartition
	n, owned := p.homes.owns(topic, partition)
	if !repartition && !owned {
		p.log.Info("channel partition not co-assigned with its repartition partition; sending its records through the repartition topic",
			zap.String("topic", topic), zap.Int("partition", partition))
		return ingestHandler{p.normalizer()}, nil
	}
	s, err := p.homes.acquire(partition,
		func() (*Enricher, error) { return p.restoreTable(ctx, partition) },
		func() (int64, int64, error) { return p.backlog(ctx, partition) })
	if err != nil {
		return nil, err
	}
	if repartition {
		return &repartitionHandler{slotUser{s: s, p: p, partition: partition}}, nil
	}
	return &homeHandler{slotUser: slotUser{s: s, p: p, partition: partition}, n: p.normalizer(),
		source: topic + "/" + strconv.Itoa(partition), partitions: n, repartition: p.cfg.Topics.Repartition, routed: -1}, nil
}

// ingestHandler is stage 1 on a channel partition: no session is looked at here, a record for one goes
// through the repartition topic.
type ingestHandler struct{ n *Normalizer }

func (h ingestHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	for i, rec := range batch {
		out[i] = h.n.Process(rec)
	}
	h.n.observer.Routed(0, repartitioned(out, h.n.topics.Repartition))
	return out
}

// repartitionHandler is stage 2 of one repartition partition. When the partition is given up with every
// output acknowledged, its table is kept (see keptTables).
type repartitionHandler struct{ slotUser }

// slotUser is what the sessions-stage handlers of a partition have in common: its slot, shared while
// they run and given up on Close.
type slotUser struct {
	s         *slot
	p         *Pipeline
	partition int
}

// Abandoned: the table holds decisions whose changelog records were never written; it must go.
func (u slotUser) Abandoned() {
	u.s.mu.Lock()
	u.s.abandoned = true
	u.s.mu.Unlock()
}

func (u slotUser) Close()  { u.p.releaseSlot(u.partition, u.s) }
func (u slotUser) unlock() { u.s.writes.Unlock() }

func (h *repartitionHandler) Process(batch []stream.Record) []stream.Result {
	out := make([]stream.Result, len(batch))
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for i, rec := range batch {
		out[i] = h.s.e.Process(rec)
		h.s.applied(rec)
	}
	coalesceChangelog(out, h.s.e.changelog) // one state per key and batch: its latest
	if len(batch) > 0 {
		h.s.progressed()
	}
	return out
}

func (h *repartitionHandler) Tick(now time.Time) []stream.Output {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.e.Expire(now)
}

func (h *repartitionHandler) lock(context.Context, []stream.Record) { h.s.writes.Lock() }

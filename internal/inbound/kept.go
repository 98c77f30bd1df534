package inbound

import (
	"cmp"
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// keptTables holds the session tables of partitions this instance gave up with every output
// acknowledged, for a while: kafka-go's eager rebalancing revokes every partition, and a partition
// handed back to the same instance then resumes from its table, catching up from the changelog offset
// it stopped at, instead of replaying its changelog from the beginning (Kafka Streams keeps local state
// and a checkpoint for the same reason). A table not taken back within keepFor is dropped: its partition
// went to another instance, and its memory is freed.
type keptTables struct {
	mu      sync.Mutex
	tables  map[int]kept
	keepFor time.Duration
}

type kept struct {
	e     *Enricher
	next  int64 // changelog offset the table reflects every record before
	timer *time.Timer
}

func newKeptTables(keepFor time.Duration) *keptTables {
	return &keptTables{tables: map[int]kept{}, keepFor: keepFor}
}

// put keeps e for partition, valid up to changelog offset next.
func (k *keptTables) put(partition int, e *Enricher, next int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.tables[partition]; ok {
		old.timer.Stop()
	}
	entry := kept{e: e, next: next}
	entry.timer = time.AfterFunc(k.keepFor, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if cur, ok := k.tables[partition]; ok && cur.e == e {
			delete(k.tables, partition)
		}
	})
	k.tables[partition] = entry
}

// take returns (and forgets) the table kept for partition.
func (k *keptTables) take(partition int) (kept, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	entry, ok := k.tables[partition]
	if ok {
		entry.timer.Stop()
		delete(k.tables, partition)
	}
	return entry, ok
}

// closeTable withdraws a partition's table; unless it is abandoned, it is kept with the changelog end
// offset, for a rebalance that hands the partition back.
func (p *Pipeline) closeTable(e *Enricher, partition int, abandoned bool) {
	e.Close()
	if abandoned {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(p.cfg.Kafka.RequestTimeout, 10*time.Second))
	defer cancel()
	_, end, err := p.bounds(ctx, p.cfg.Topics.Sessions, partition)
	if err != nil {
		p.log.Debug("sessions not kept: changelog end unknown", zap.Int("partition", partition), zap.Error(err))
		return
	}
	e.table.Pause()
	p.kept.put(partition, e, end)
}

package inbound

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaedge"
)

// restoreTable gives partition's session table: the one this instance kept from an earlier generation,
// caught up from the changelog offset it stopped at, or else a new one replaying the changelog
// partition from its beginning.
func (p *Pipeline) restoreTable(ctx context.Context, partition int) (*Enricher, error) {
	if k, ok := p.kept.take(partition); ok {
		err := p.catchUpKept(ctx, partition, k)
		if err == nil {
			return k.e, nil
		}
		if !errors.Is(err, kafkaedge.ErrGap) {
			p.kept.put(partition, k.e, k.next) // reading failed: the table is still good to catch up
			return nil, err
		}
		p.log.Info("kept sessions cannot be caught up; restoring from the beginning", zap.Int("partition", partition), zap.Error(err))
	}
	e := NewEnricher(p.outputTopics(), p.cfg.Topics.Sessions, partition, p.cfg.Inbound.IdleTimeoutFor, p.obs.Sessions, nil).
		WithReplayWindow(p.cfg.Inbound.ReplayWindow).
		WithEvents(p.cfg.SessionEventsTopic()).
		WithMaxBytes(p.cfg.Inbound.MaxMessageBytes + config.EnrichmentHeadroom).
		WithUpstream(func() int64 { return p.marks.Of(partition) })
	start := time.Now()
	n, _, err := kafkaedge.ReadFrom(ctx, p.kafka, p.cfg.Topics.Sessions, partition, -1, p.restoreRecord(e, partition))
	if err != nil {
		return nil, err
	}
	e.Restored()
	p.obs.Restored("inbound-sessions", n, time.Since(start), false)
	p.log.Info("sessions restored", zap.Int("partition", partition), zap.Int("records", n),
		zap.Int("sessions", e.Sessions()), zap.Duration("took", time.Since(start)))
	return e, nil
}

// catchUpKept catches a kept table up with what the changelog partition got after it was given up: nothing
// when no one else owned the partition meanwhile.
func (p *Pipeline) catchUpKept(ctx context.Context, partition int, k kept) error {
	start := time.Now()
	n, end, err := kafkaedge.ReadFrom(ctx, p.kafka, p.cfg.Topics.Sessions, partition, k.next, p.restoreRecord(k.e, partition))
	if err != nil {
		return err
	}
	if n > 0 {
		// Another owner wrote meanwhile: take its states up as a restore would (its proactive expiries'
		// events are repeated).
		k.e.Restored()
	}
	p.obs.Restored("inbound-sessions", n, time.Since(start), true)
	p.log.Info("sessions kept", zap.Int("partition", partition), zap.Int("records", n), zap.Int64("from", k.next), zap.Int64("end", end),
		zap.Int("sessions", k.e.Sessions()), zap.Duration("took", time.Since(start)))
	return nil
}

func (p *Pipeline) restoreRecord(e *Enricher, partition int) func(key, value []byte) error {
	return func(key, value []byte) error {
		if err := e.Restore(key, value); err != nil {
			// A state that cannot be read must not stick the partition: its key starts fresh.
			p.log.Warn("skipping unreadable session state", zap.Int("partition", partition), zap.Error(err))
		}
		return nil
	}
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
	k.tables[partition] = kept{e: e, next: next, timer: time.AfterFunc(k.keepFor, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if cur, ok := k.tables[partition]; ok && cur.e == e {
			delete(k.tables, partition)
		}
	})}
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

package inbound

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stream"
)

// watchInterval is how often the upstream watermarks are read: each reading costs a few requests per
// partition, and expiry needs seconds, not milliseconds.
const watchInterval = time.Second

// watchUpstream reads both inbound groups' offsets every watchInterval (or commit interval, if longer)
// into p.marks, the horizon of proactive expiry, with where the records held above each channel
// partition's last stable offset go (an open transaction's: read uncommitted, see heldPeeker). A reading
// that fails is skipped: the watermarks stand still, which only delays expiry.
func (p *Pipeline) watchUpstream(ctx context.Context, ingestGroup, sessionsGroup string) {
	var topics []string
	var listed time.Time
	looker := p.normalizer()
	looker.observer = nopObserver{} // looking at held records is not processing them: nothing counted
	peek := &heldPeeker{scans: map[partitionKey]*heldScan{}, dest: p.destination(looker),
		read: func(ctx context.Context, topic string, partition int, from, end int64, fn func(stream.Record) error) error {
			return kafkaedge.ReadHeld(ctx, p.kafka, topic, partition, from, end, fn)
		}}
	retry.Every(ctx, max(watchInterval, p.cfg.Kafka.Consumer.CommitInterval), func() bool {
		at := time.Now()
		if topics == nil || at.Sub(listed) >= p.cfg.Inbound.TopicRefreshInterval {
			found, _, _, err := p.channelTopics(ctx)
			if err != nil {
				p.log.Debug("upstream watermark: topics not listed", zap.Error(err))
				return true
			}
			topics, listed = found, at
		}
		ingest, err := kafkaedge.GroupOffsets(ctx, p.kafka, ingestGroup, topics)
		if err != nil {
			p.log.Debug("upstream watermark: ingest offsets not read", zap.Error(err))
			return true
		}
		// The sessions group reads the channel topics the fast path takes: a channel partition has come
		// as far as the further of the two groups (handoverBroker starts it there).
		sessions, err := kafkaedge.GroupOffsets(ctx, p.kafka, sessionsGroup, append(slices.Clone(topics), p.cfg.Topics.Repartition))
		if err != nil {
			p.log.Debug("upstream watermark: sessions offsets not read", zap.Error(err))
			return true
		}
		channels, repartition := furthest(ingest, sessions, p.cfg.Topics.Repartition)
		peekCtx, cancel := context.WithTimeout(ctx, max(p.cfg.Kafka.RequestTimeout, 5*time.Second))
		held := peek.held(peekCtx, channels, len(repartition))
		cancel()
		p.marks.Observe(at.UnixMilli(), channels, held, repartition)
		return true
	})
}

// furthest merges two readings of the channel partitions by the further committed offset, and splits
// the repartition topic's partitions off the sessions group's reading.
func furthest(ingest, sessions []kafkaedge.PartitionOffsets, repartitionTopic string) (channels, repartition []kafkaedge.PartitionOffsets) {
	at := make(map[partitionKey]int, len(ingest))
	channels = slices.Clone(ingest)
	for i, o := range channels {
		at[partitionKey{o.Topic, o.Partition}] = i
	}
	for _, o := range sessions {
		if o.Topic == repartitionTopic {
			repartition = append(repartition, o)
			continue
		}
		if i, ok := at[partitionKey{o.Topic, o.Partition}]; ok {
			channels[i].Committed = max(channels[i].Committed, o.Committed)
			channels[i].End = max(channels[i].End, o.End)
			channels[i].High = max(channels[i].High, o.High)
		} else {
			channels = append(channels, o)
		}
	}
	return channels, repartition
}

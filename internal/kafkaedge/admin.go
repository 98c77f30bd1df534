package kafkaedge

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/stage"
)

// TopicPartitions lists the cluster's topics with their partition counts.
func TopicPartitions(ctx context.Context, factory *kafkaclient.Factory) (map[string]int, error) {
	md, err := factory.Client().Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	counts := make(map[string]int, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error == nil && !t.Internal {
			counts[t.Name] = len(t.Partitions)
		}
	}
	return counts, nil
}

// PartitionOffsets is a group's committed offset on one partition and the partition's ends.
type PartitionOffsets struct {
	Topic     string
	Partition int
	// Committed is where the group resumes: its committed offset, or the partition's first offset when
	// it has none.
	Committed int64
	// End is the last stable offset: where a read_committed reader stops, so what lag counts to. High
	// is the high watermark (>= End): above End lie an open transaction's records and whatever was
	// written after its first one, all held back until it ends.
	End, High int64
}

// GroupOffsets returns group's committed offsets on every partition of topics, and then (read after
// them) the partitions' ends. A reading is whole or an error: a topic or partition the broker could not
// answer for fails it, so a caller never mistakes a missing partition for a caught-up one. kafka-go
// does not report group offsets, so they are asked of the broker.
func GroupOffsets(ctx context.Context, factory *kafkaclient.Factory, group string, topics []string) ([]PartitionOffsets, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if len(topics) == 0 {
		return nil, nil
	}
	client := factory.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	parts := map[string][]int{}
	offsetReq := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			offsetReq[t.Name] = append(offsetReq[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return nil, err
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: offsetReq})
	if err != nil {
		return nil, err
	}
	stable, err := kafkaclient.LastStableOffsets(ctx, client, parts)
	if err != nil {
		return nil, err
	}
	var out []PartitionOffsets
	for topic, ps := range ends.Topics {
		done := map[int]int64{}
		for _, c := range committed.Topics[topic] {
			if c.Error != nil {
				return nil, fmt.Errorf("committed offset of %s/%d: %w", topic, c.Partition, c.Error)
			}
			done[c.Partition] = c.CommittedOffset
		}
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
			}
			// No commit, or one below the log start (retention removed what it pointed at): the group
			// resumes at the first offset.
			at, ok := done[p.Partition]
			if !ok || at < p.FirstOffset {
				at = p.FirstOffset
			}
			lso, ok := stable[topic][p.Partition]
			if !ok {
				return nil, fmt.Errorf("last stable offset of %s/%d: not in the answer", topic, p.Partition)
			}
			// Read after the high watermark, the last stable offset may have passed it.
			out = append(out, PartitionOffsets{Topic: topic, Partition: p.Partition, Committed: at, End: lso, High: max(p.LastOffset, lso)})
		}
	}
	return out, nil
}

// GroupLag returns the lag of group on every partition of topics, up to the last stable offset: what a
// read_committed reader can read and has not, so neither an open transaction's records (not readable
// yet) nor the markers past a group's last record (never records) show as lag. A partition without a
// committed offset counts from its first offset (where the group will start).
func GroupLag(ctx context.Context, factory *kafkaclient.Factory, group string, topics []string) ([]stage.PartitionLag, error) {
	offsets, err := GroupOffsets(ctx, factory, group, topics)
	if err != nil {
		return nil, err
	}
	out := make([]stage.PartitionLag, 0, len(offsets))
	for _, o := range offsets {
		out = append(out, stage.PartitionLag{Topic: o.Topic, Partition: o.Partition, Lag: max(0, o.End-o.Committed)})
	}
	return out, nil
}

// Lag is GroupLag on factory, in the shape stage.Config.Lag takes.
func Lag(factory *kafkaclient.Factory) func(ctx context.Context, group string, topics []string) ([]stage.PartitionLag, error) {
	return func(ctx context.Context, group string, topics []string) ([]stage.PartitionLag, error) {
		return GroupLag(ctx, factory, group, topics)
	}
}

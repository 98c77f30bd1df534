package inbound

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/retry"
	"github.com/cimstream/cimstream/internal/stage"
)

// A channel topic is read by the ingest group or, when the fast path takes it, by the sessions group;
// it moves between them when the fast path is switched or its partition count changes (and on the
// upgrade that brings the fast path). handoverBroker starts each channel partition at the higher of the
// two groups' committed offsets, so the group taking a topic over goes on where the other stopped
// instead of reading the topic again from its beginning. It also tells the sessions stage which
// repartition partitions each generation gave it (the fast path's ownership check).
type handoverBroker struct {
	stage.Broker
	p          *Pipeline
	otherGroup string              // the other inbound group
	assigned   func(map[int]int64) // nil: not the sessions stage
	offsets    groupOffsets        // reads a group's committed offsets
}

// groupOffsets reads group's committed offsets (the first offset where it has none) on topics.
type groupOffsets func(ctx context.Context, group string, topics []string) ([]kafkaedge.PartitionOffsets, error)

func (b handoverBroker) Group(groupID string, topics []string) (stage.Group, error) {
	g, err := b.Broker.Group(groupID, topics)
	if err != nil {
		return nil, err
	}
	return handoverGroup{Group: g, b: b}, nil
}

type handoverGroup struct {
	stage.Group
	b handoverBroker
}

func (g handoverGroup) Next(ctx context.Context) (stage.Generation, error) {
	gen, err := g.Group.Next(ctx)
	if err != nil {
		return nil, err
	}
	// A reading that fails is tried again a few times before the member gives the generation up (which
	// rebalances the whole group).
	var as []stage.Assignment
	backoff := retry.Backoff{Min: 500 * time.Millisecond, Max: 500 * time.Millisecond}
	for attempt := 0; ; attempt++ {
		if as, err = g.b.startOffsets(ctx, gen.Assignments()); err == nil || attempt == 2 || !backoff.Wait(ctx) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if g.b.assigned != nil {
		repartition := map[int]int64{}
		for _, a := range as {
			if a.Topic == g.b.p.cfg.Topics.Repartition {
				repartition[a.Partition] = a.Offset
			}
		}
		g.b.assigned(repartition)
	}
	return handoverGeneration{Generation: gen, assignments: as}, nil
}

type handoverGeneration struct {
	stage.Generation
	assignments []stage.Assignment
}

func (g handoverGeneration) Assignments() []stage.Assignment { return g.assignments }

// startOffsets raises each channel partition's offset to the other group's committed one when that is
// higher (the other group read the topic last).
func (b handoverBroker) startOffsets(ctx context.Context, as []stage.Assignment) ([]stage.Assignment, error) {
	var topics []string
	for _, a := range as {
		if a.Topic != b.p.cfg.Topics.Repartition && !slices.Contains(topics, a.Topic) {
			topics = append(topics, a.Topic)
		}
	}
	if len(topics) == 0 {
		return as, nil
	}
	other, err := b.offsets(ctx, b.otherGroup, topics)
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", b.otherGroup, err)
	}
	committed := make(map[partitionKey]int64, len(other))
	for _, o := range other {
		committed[partitionKey{o.Topic, o.Partition}] = o.Committed
	}
	out := slices.Clone(as)
	for i, a := range out {
		if c, ok := committed[partitionKey{a.Topic, a.Partition}]; ok {
			out[i].Offset = max(a.Offset, c)
		}
	}
	return out, nil
}

package inbound

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/stage"
)

// A channel partition starts at the higher of the two inbound groups' committed offsets: the group
// taking a topic over goes on where the other stopped, never from the beginning, never backwards. The
// repartition topic is left alone.
func TestHandoverStartsAtTheFurtherGroup(t *testing.T) {
	cfg := config.Default()
	cfg.Topics.Repartition = "rep"
	b := handoverBroker{p: &Pipeline{cfg: cfg}, otherGroup: "g",
		offsets: func(_ context.Context, group string, topics []string) ([]kafkaedge.PartitionOffsets, error) {
			if group != "g" || len(topics) != 1 || topics[0] != "web" {
				t.Fatalf("asked %s for %v", group, topics)
			}
			return []kafkaedge.PartitionOffsets{{Topic: "web", Partition: 0, Committed: 500}, {Topic: "web", Partition: 1, Committed: 40},
				{Topic: "web", Partition: 2, Committed: 7}}, nil
		}}
	got, err := b.startOffsets(context.Background(), []stage.Assignment{
		{Topic: "web", Partition: 0, Offset: -2}, // none of its own: the other group's
		{Topic: "web", Partition: 1, Offset: 90}, // its own is further
		{Topic: "web", Partition: 2, Offset: 3},  // the other read further since
		{Topic: "rep", Partition: 0, Offset: -2},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{500, 90, 7, -2}
	for i, a := range got {
		if a.Offset != want[i] {
			t.Errorf("%s/%d starts at %d, want %d", a.Topic, a.Partition, a.Offset, want[i])
		}
	}
	b.offsets = func(context.Context, string, []string) ([]kafkaedge.PartitionOffsets, error) {
		return nil, errors.New("down")
	}
	if _, err := b.startOffsets(context.Background(), []stage.Assignment{{Topic: "web"}}); err == nil {
		t.Fatal("offsets not read, yet a start offset was given (it could re-read the topic from the beginning)")
	}
}

// The fast path is refused for a channel partition whose repartition partition this member does not own
// in the generation (the assignor did not co-partition them, or the topic is not co-partitioned): its
// records all go through the repartition topic, as stage 1 sends them.
func TestFastPathRefusedWithoutTheRepartitionPartition(t *testing.T) {
	cfg := config.Default()
	p := &Pipeline{cfg: cfg, homes: newHomeTables(), log: zap.NewNop()}
	p.homes.setTopics([]string{"cim.inbound.web"}, 4)
	p.homes.assign(map[int]int64{0: -2, 1: -2}) // repartition partitions 0 and 1 only
	for _, c := range []struct {
		topic     string
		partition int
	}{{"cim.inbound.web", 2}, {"cim.inbound.web", 5}, {"cim.inbound.sms", 0}} {
		h, err := p.newSessionsHandler(context.Background(), c.topic, c.partition)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h.(ingestHandler); !ok {
			t.Errorf("%s/%d: handler %T, want the repartitioning ingestHandler", c.topic, c.partition, h)
		}
	}
}

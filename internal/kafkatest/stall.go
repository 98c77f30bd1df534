package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// StalledMember is a member of a consumer group that takes its share of partitions and never reads or
// commits them: a stage instance stuck upstream. Leave hands its partitions back.
type StalledMember struct {
	Partitions []int
	group      *kafka.ConsumerGroup
}

// StallMember joins group on topic, as cimstream's members do (same balancer), and returns once it was
// assigned at least one partition (at most 30 s, then the test fails).
func StallMember(t testing.TB, group, topic string) *StalledMember {
	t.Helper()
	cfg := Factory(t).GroupConfig(group, []string{topic})
	g, err := kafka.NewConsumerGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &StalledMember{group: g}
	t.Cleanup(m.Leave)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		gen, err := g.Next(ctx)
		if err != nil {
			t.Fatalf("stalled member of %s: no generation with partitions within 30 s: %v", group, err)
		}
		for _, a := range gen.Assignments[topic] {
			m.Partitions = append(m.Partitions, a.ID)
		}
		if len(m.Partitions) > 0 {
			return m
		}
	}
}

// Leave leaves the group (its partitions move to the other members).
func (m *StalledMember) Leave() {
	if m.group != nil {
		_ = m.group.Close()
		m.group = nil
	}
}

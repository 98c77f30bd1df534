package topics_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

func TestIntegrationCreateIsSafeTwiceAndCompactsSessions(t *testing.T) {
	cfg := kafkatest.Config(t)
	f := kafkatest.Factory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := topics.Required(cfg)
	first, err := topics.Create(ctx, f.Client(), specs)
	if err != nil {
		t.Fatal(err)
	}
	second, err := topics.Create(ctx, f.Client(), specs)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	for i := range specs {
		if !first[i].Created || second[i].Created {
			t.Errorf("%s: created %v then %v", specs[i].Name, first[i].Created, second[i].Created)
		}
	}
	if err := topics.Check(ctx, f.Client(), specs); err != nil {
		t.Fatal(err)
	}
	// The sessions changelog must be compacted.
	resp, err := f.Client().DescribeConfigs(ctx, describe(cfg.Topics.Sessions))
	if err != nil {
		t.Fatal(err)
	}
	policy := ""
	for _, r := range resp.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				policy = e.ConfigValue
			}
		}
	}
	if policy != "compact" {
		t.Fatalf("sessions cleanup.policy = %q", policy)
	}
}

func describe(topic string) *kafka.DescribeConfigsRequest {
	return &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
	}}}
}

// The preflight refuses a changelog that would put state in the wrong partition or never forget it,
// naming both topics and their counts.
func TestIntegrationCheckStateRefusesDriftedChangelog(t *testing.T) {
	cfg := kafkatest.Config(t)
	f := kafkatest.Factory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := topics.Required(cfg)
	for i := range specs {
		if specs[i].Name == cfg.Topics.Sessions {
			specs[i].Partitions = cfg.Topics.Partitions + 1
			specs[i].Configs = nil // not compacted
		}
	}
	if _, err := topics.Create(ctx, f.Client(), specs); err != nil {
		t.Fatal(err)
	}
	err := topics.CheckState(ctx, f.Client(), cfg.Topics.Sessions, cfg.Topics.Repartition)
	if !errors.Is(err, topics.ErrStateTopics) {
		t.Fatalf("want ErrStateTopics, got %v", err)
	}
	for _, want := range []string{cfg.Topics.Sessions, cfg.Topics.Repartition, fmt.Sprint(cfg.Topics.Partitions + 1), "cleanup.policy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error must name %q: %v", want, err)
		}
	}
}

func TestIntegrationCheckStateAcceptsCreatedTopics(t *testing.T) {
	cfg := kafkatest.Config(t)
	f := kafkatest.Factory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topics.Create(ctx, f.Client(), topics.Required(cfg)); err != nil {
		t.Fatal(err)
	}
	if err := topics.CheckState(ctx, f.Client(), cfg.Topics.Sessions, cfg.Topics.Repartition); err != nil {
		t.Fatal(err)
	}
}

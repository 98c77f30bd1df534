package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
)

// CreateRequired creates every topic cfg needs on cfg's brokers, with the settings `cimstream topics
// create` uses (a compacted sessions changelog), waits until they have leaders, and deletes them when
// the test ends.
func CreateRequired(t testing.TB, cfg config.Config) {
	t.Helper()
	f := factoryFor(t, cfg)
	specs := topics.Required(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := topics.Create(ctx, f.Client(), specs); err != nil {
		t.Fatal(err)
	}
	names := topicNames(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = f.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	})
	waitLeaders(t, f, names, 60*time.Second)
}

// WaitLeaders waits until every partition of cfg's topics has a leader on cfg's brokers, as after a
// broker restart.
func WaitLeaders(t testing.TB, cfg config.Config) {
	t.Helper()
	waitLeaders(t, factoryFor(t, cfg), topicNames(cfg), 60*time.Second)
}

func factoryFor(t testing.TB, cfg config.Config) *kafkaclient.Factory {
	t.Helper()
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func topicNames(cfg config.Config) []string {
	var names []string
	for _, s := range topics.Required(cfg) {
		names = append(names, s.Name)
	}
	return names
}

// waitLeaders polls metadata until every partition of the topics has a leader (bounded by limit).
func waitLeaders(t testing.TB, f *kafkaclient.Factory, names []string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := f.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		cancel()
		if err != nil || len(md.Topics) != len(names) {
			continue
		}
		ok := true
		for _, tp := range md.Topics {
			ok = ok && tp.Error == nil && len(tp.Partitions) > 0
			for _, p := range tp.Partitions {
				ok = ok && p.Leader.Host != ""
			}
		}
		if ok {
			return
		}
	}
	t.Fatalf("topics %v: partitions without a leader after %v", names, limit)
}

// Package kafkatest gives integration tests a real Apache Kafka broker: one per test binary, with unique
// topic and group names per test.
//
// Where the broker comes from, in order:
//  1. KAFKA_BROKERS (comma-separated), e.g. the broker `make test` starts with scripts/kafka.sh;
//  2. a Docker engine, through testcontainers-go's Kafka module (the apache/kafka image);
//  3. neither: tests that need a broker skip with the reason, or fail when CIMSTREAM_REQUIRE_KAFKA=1
//     (as in `make test` and CI, where a skipped integration test counts as a failure).
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }
package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/testcontainers/testcontainers-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
)

var (
	brokers    []string
	unusable   string // why no broker is available, when brokers is empty
	sequence   atomic.Int64
	runID      = fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	requireEnv = "CIMSTREAM_REQUIRE_KAFKA"
)

// Main finds or starts the broker, runs the tests, and stops a broker it started.
func Main(m *testing.M) int {
	stop := setup()
	code := m.Run()
	stop()
	return code
}

func setup() (stop func()) {
	if env := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")); env != "" {
		brokers = strings.Split(env, ",")
		return func() {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := testcontainers.ProviderDocker.GetProvider()
	if err == nil {
		err = provider.Health(ctx)
	}
	if err != nil {
		unusable = "no Kafka broker: KAFKA_BROKERS is unset and no Docker engine answers (" + firstLine(err) +
			"); run `make test`, which starts a local Apache Kafka broker"
		return func() {}
	}
	container, addr, err := startContainer(ctx)
	if err != nil {
		unusable = "starting Kafka with testcontainers failed: " + firstLine(err)
		if container != nil {
			_ = testcontainers.TerminateContainer(container)
		}
		return func() {}
	}
	brokers = []string{addr}
	return func() { _ = testcontainers.TerminateContainer(container) }
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Decide says what a test should do when no broker is available: skip, or fail when required.
// Exported for its own test; tests call Brokers.
func Decide(reason string, required bool) (skip, fail bool) {
	if reason == "" {
		return false, false
	}
	return !required, required
}

// Brokers returns the broker addresses, or ends the test: skipped, or failed under CIMSTREAM_REQUIRE_KAFKA=1.
func Brokers(t testing.TB) []string {
	t.Helper()
	reason := unusable
	if len(brokers) == 0 && reason == "" {
		reason = "kafkatest.Main was not called from TestMain"
	}
	skip, fail := Decide(reason, os.Getenv(requireEnv) == "1")
	switch {
	case fail:
		t.Fatalf("%s (%s=1: integration tests must not be skipped)", reason, requireEnv)
	case skip:
		t.Skip(reason)
	}
	return brokers
}

// Config returns cimstream's default configuration pointed at the test broker, with a unique group and
// unique topic names (created by CreateTopics, not here), and the admin server on a free port.
func Config(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.Kafka.Brokers = Brokers(t)
	prefix := Name(t, "cfg") + "."
	cfg.Kafka.Consumer.GroupID = prefix + "group"
	cfg.Topics.InboundPattern = config.InboundPattern(prefix)
	cfg.Topics.CCMInbound = prefix + "ccm.inbound"
	cfg.Topics.CCMOutbound = prefix + "ccm.outbound"
	cfg.Topics.Notifications = prefix + "cim.notifications"
	cfg.Topics.DeadLetter = prefix + "cimstream.dlq"
	cfg.Topics.Sessions = prefix + "cimstream.sessions"
	cfg.Topics.Repartition = prefix + "cimstream.inbound.repartition"
	cfg.Topics.InboundChannels = nil
	cfg.Topics.Partitions = 3
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.Shutdown.Timeout = 15 * time.Second
	return cfg
}

// InboundTopic is the name of a connector topic that cfg's inbound pattern matches.
func InboundTopic(cfg config.Config, channel string) string {
	p := strings.TrimSuffix(strings.TrimPrefix(cfg.Topics.InboundPattern, "^"), config.InboundPattern("")[1:])
	return strings.ReplaceAll(p, `\.`, ".") + config.InboundTopic(channel)
}

// Factory returns the project's client factory for the test broker.
func Factory(t testing.TB) *kafkaclient.Factory {
	cfg := Config(t)
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close) // its shared client's metadata refresh
	return f
}

// Name returns a name unique to this test run and test, for topics and groups.
func Name(t testing.TB, kind string) string {
	clean := strings.NewReplacer("/", ".", " ", "_", "#", "").Replace(t.Name())
	if len(clean) > 120 {
		clean = clean[:120]
	}
	return fmt.Sprintf("test.%s.%s.%s.%d", runID, clean, kind, sequence.Add(1))
}

// Topic creates a topic with a unique name and the given partition count, retrying while the broker
// settles, and deletes it when the test ends.
func Topic(t testing.TB, kind string, partitions int, configs ...kafka.ConfigEntry) string {
	t.Helper()
	name := Name(t, kind)
	CreateTopic(t, name, partitions, configs...)
	return name
}

// CreateTopic creates a topic by name and waits until its leaders are known.
func CreateTopic(t testing.TB, name string, partitions int, configs ...kafka.ConfigEntry) {
	t.Helper()
	client := Factory(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 1; ; attempt++ {
		resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic: name, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs,
		}}})
		if err == nil {
			err = resp.Errors[name]
		}
		if err == nil || attempt == 5 {
			if err != nil {
				t.Fatalf("create topic %s: %v", name, err)
			}
			break
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	waitLeaders(t, Factory(t), []string{name}, 30*time.Second)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
}

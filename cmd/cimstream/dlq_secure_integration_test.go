package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter/tool"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// TestIntegrationDLQOverSASLSSL runs `cimstream dlq inspect` and `replay` (through the command line,
// --config and --set) against an Apache Kafka broker whose client listener is SASL_SSL (SCRAM-SHA-512
// over TLS with a CA made here), and checks the replayed record over the broker's plaintext listener.
func TestIntegrationDLQOverSASLSSL(t *testing.T) {
	kafkatest.Brokers(t) // the shared broker's availability decides skip or fail, as for every integration test
	dir := t.TempDir()
	caFile, keystore := kafkatest.PKI(t, dir, "dlq")
	broker := kafkatest.StartSASLBroker(t, keystore)
	// Topics and the dead letter are set up over PLAINTEXT; the commands use only SASL_SSL.
	plain := config.Default().Kafka
	plain.Brokers = []string{broker.Addr}
	pf, err := kafkaclient.New(plain)
	if err != nil {
		t.Fatal(err)
	}
	dlqTopic, target := kafkatest.Name(t, "dlq"), kafkatest.Name(t, "web")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, name := range []string{dlqTopic, target} {
		if err := dlqCreateTopic(ctx, pf, name); err != nil {
			t.Fatal(err)
		}
	}
	value := `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"secure"}}`
	rec := stream.Record{Topic: target, Key: []byte("c"), Value: []byte(value), Time: time.Now()}
	dlqWriteAll(t, tool.KafkaBroker(pf), []stream.Output{deadletter.Builder{Topic: dlqTopic, Pipeline: "inbound"}.
		Build(rec, cim.Violations{{Code: "delivery_failed", Message: "gave up"}})})

	cfgFile := filepath.Join(dir, "secure.yaml")
	yaml := fmt.Sprintf("kafka:\n  brokers: [\"%s\"]\n  requestTimeout: 10s\n  tls:\n    enabled: true\n    caFile: %s\n  sasl:\n    mechanism: scram-sha-512\n    username: alice\ntopics:\n  deadLetter: %s\n",
		broker.SASLAddr, caFile, dlqTopic)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"dlq", "inspect", "--config", cfgFile, "--set", "kafka.sasl.password=alice-secret", "--format", "json"}, nil, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), `"deadLetters":1`) {
		t.Fatalf("inspect over SASL_SSL: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"dlq", "replay", "--set", "kafka.sasl.password=alice-secret", "--config", cfgFile}, nil, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "replayed 1,") {
		t.Fatalf("replay over SASL_SSL: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	got := 0
	err = tool.KafkaBroker(pf).Read(ctx, target, 0, 0, 1, func(r stream.Record) error {
		if string(r.Value) == value {
			got++
		}
		return nil
	})
	if err != nil || got != 1 {
		t.Errorf("the replayed record over plaintext: %d found, %v", got, err)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"dlq", "inspect", "--config", cfgFile, "--set", "kafka.sasl.password=wrong"}, nil, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "check kafka.sasl.username and the password") || strings.Contains(stderr.String(), "wrong") {
		t.Errorf("wrong password: exit %d, stderr %q", code, stderr.String())
	}
}

// dlqCreateTopic creates a one-partition topic and waits until its leader answers a read of its offsets.
func dlqCreateTopic(ctx context.Context, f *kafkaclient.Factory, name string) error {
	resp, err := f.Client().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: 1, ReplicationFactor: 1}}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	for attempt := 0; ; attempt++ {
		_, err := kafkaedge.Ranges(ctx, f, name)
		if err == nil || attempt == 50 {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

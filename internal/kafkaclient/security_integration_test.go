package kafkaclient_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// TestIntegrationSASLSSL runs Apache Kafka with a SASL_SSL listener (SCRAM-SHA-512 over TLS, with a
// certificate made here) and checks the project's clients against it: the right credentials produce and
// consume; a wrong password or an unknown CA give errors that say what to fix.
func TestIntegrationSASLSSL(t *testing.T) {
	kafkatest.Brokers(t) // the shared broker's availability decides skip or fail, as for every integration test
	dir := t.TempDir()
	caFile, keystore := kafkatest.PKI(t, dir, "good")
	otherCA, _ := kafkatest.PKI(t, dir, "other")
	broker := kafkatest.StartSASLBroker(t, keystore)
	// The topic is created over PLAINTEXT (the admin path); clients below use only SASL_SSL.
	plain := config.Default().Kafka
	plain.Brokers = []string{broker.Addr}
	admin, err := kafkaclient.New(plain)
	if err != nil {
		t.Fatal(err)
	}
	topic := kafkatest.Name(t, "secure")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := admin.Client().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}

	secure := func(password, ca string) config.Kafka {
		k := config.Default().Kafka
		k.Brokers = []string{broker.SASLAddr}
		k.TLS = config.TLS{Enabled: true, CAFile: ca}
		k.SASL = config.SASL{Mechanism: "scram-sha-512", Username: "alice", Password: password}
		k.RequestTimeout = 10 * time.Second
		return k
	}

	good, err := kafkaclient.New(secure("alice-secret", caFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := good.Ping(ctx); err != nil {
		t.Fatalf("SASL_SSL with the right credentials: %v", err)
	}
	w := good.Writer(topic)
	defer w.Close()
	var werr error
	for i := 0; i < 20; i++ { // the new topic's leader may take a moment to be known
		if werr = w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("over SASL_SSL")}); werr == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if werr != nil {
		t.Fatalf("produce over SASL_SSL: %v", werr)
	}
	r, err := good.PartitionReader(topic, 0, kafka.FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil || string(m.Value) != "over SASL_SSL" {
		t.Fatalf("consume over SASL_SSL: %v %q", err, m.Value)
	}

	cases := []struct {
		name string
		cfg  config.Kafka
		want string
	}{
		{"wrong password", secure("wrong", caFile), "check kafka.sasl.username and the password"},
		{"unknown CA", secure("alice-secret", otherCA), "kafka.tls.caFile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := kafkaclient.New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer pcancel()
			_, err = f.Ping(pctx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error saying %q, got %v", c.want, err)
			}
			t.Logf("%s: %v", c.name, err)
			if strings.Contains(err.Error(), "alice-secret") {
				t.Fatal("the error must not contain the password")
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter"
	"github.com/cimstream/cimstream/internal/dlq"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/pkg/cim"
)

// dlqTestPKI writes a CA and a server certificate for 127.0.0.1 signed by it: the CA as PEM, and the
// broker's PEM keystore (PKCS#8 key and certificate chain in one file).
func dlqTestPKI(t *testing.T, dir string) (caFile, keystore string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dlq test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile, keystore = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem")
	write := func(path string, blocks ...*pem.Block) {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(caFile, &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	write(keystore, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}, &pem.Block{Type: "CERTIFICATE", Bytes: der},
		&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caFile, keystore
}

// TestIntegrationDLQOverSASLSSL runs `cimstream dlq inspect` and `replay` (through the command line,
// --config and --set) against an Apache Kafka broker whose client listener is SASL_SSL (SCRAM-SHA-512
// over TLS with a CA made here), and checks the replayed record over the broker's plaintext listener.
func TestIntegrationDLQOverSASLSSL(t *testing.T) {
	kafkatest.Brokers(t) // the shared broker's availability decides skip or fail, as for every integration test
	dir := t.TempDir()
	caFile, keystore := dlqTestPKI(t, dir)
	saslPort := kafkatest.FreePort(t)
	broker := kafkatest.StartBroker(t, kafkatest.BrokerOptions{Env: func(port int) map[string]string {
		return map[string]string{
			"KAFKA_LISTENERS":            fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d", port, saslPort),
			"KAFKA_ADVERTISED_LISTENERS": fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d", port, saslPort),
			"KAFKA_PROTOCOL_MAP":         "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
			"KAFKA_FORMAT_ARGS":          "--add-scram SCRAM-SHA-512=[name=alice,password=alice-secret]",
			"KAFKA_EXTRA_PROPS": strings.Join([]string{
				"sasl.enabled.mechanisms=SCRAM-SHA-512",
				"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
				"listener.name.sasl_ssl.ssl.keystore.type=PEM",
				"listener.name.sasl_ssl.ssl.keystore.location=" + keystore,
			}, "\n"),
		}
	}})
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
	dlqWriteAll(t, dlq.KafkaBroker(pf), []stream.Output{deadletter.Builder{Topic: dlqTopic, Pipeline: "inbound"}.
		Build(rec, cim.Violations{{Code: "delivery_failed", Message: "gave up"}})})

	cfgFile := filepath.Join(dir, "secure.yaml")
	yaml := fmt.Sprintf("kafka:\n  brokers: [\"127.0.0.1:%d\"]\n  requestTimeout: 10s\n  tls:\n    enabled: true\n    caFile: %s\n  sasl:\n    mechanism: scram-sha-512\n    username: alice\ntopics:\n  deadLetter: %s\n",
		saslPort, caFile, dlqTopic)
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
	err = dlq.KafkaBroker(pf).Read(ctx, target, 0, 0, 1, func(r stream.Record) error {
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

package kafkaclient_test

import (
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
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// pki writes a CA and a server certificate for 127.0.0.1 signed by it: the CA as PEM, and the broker's
// PEM keystore (PKCS#8 key and certificate chain in one file).
func pki(t *testing.T, dir, name string) (caFile, keystore string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
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
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile = filepath.Join(dir, name+"-ca.pem")
	keystore = filepath.Join(dir, name+"-server.pem")
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

// TestIntegrationSASLSSL runs Apache Kafka with a SASL_SSL listener (SCRAM-SHA-512 over TLS, with a
// certificate made here) and checks the project's clients against it: the right credentials produce and
// consume; a wrong password or an unknown CA give errors that say what to fix.
func TestIntegrationSASLSSL(t *testing.T) {
	kafkatest.Brokers(t) // the shared broker's availability decides skip or fail, as for every integration test
	dir := t.TempDir()
	caFile, keystore := pki(t, dir, "good")
	otherCA, _ := pki(t, dir, "other")
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
		k.Brokers = []string{fmt.Sprintf("127.0.0.1:%d", saslPort)}
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

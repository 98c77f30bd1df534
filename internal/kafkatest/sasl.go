package kafkatest

import (
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
)

// PKI writes a CA and a server certificate for 127.0.0.1 signed by it under dir (files prefixed name):
// the CA as PEM, and the broker's PEM keystore (PKCS#8 key and certificate chain in one file).
func PKI(t testing.TB, dir, name string) (caFile, keystore string) {
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

// SASL user of the brokers StartSASLBroker starts.
const (
	SASLUser     = "alice"
	SASLPassword = "alice-secret"
)

// SASLBroker is a broker of a test's own with a SASL_SSL listener (SCRAM-SHA-512 over TLS) beside a
// PLAINTEXT one for setting up topics.
type SASLBroker struct {
	*Broker
	SASLAddr string
}

// StartSASLBroker starts a broker whose SASL_SSL listener presents keystore (see PKI) and knows SASLUser.
func StartSASLBroker(t testing.TB, keystore string) *SASLBroker {
	t.Helper()
	saslPort := FreePort(t)
	broker := StartBroker(t, BrokerOptions{Env: func(port int) map[string]string {
		return map[string]string{
			"KAFKA_LISTENERS":            fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d", port, saslPort),
			"KAFKA_ADVERTISED_LISTENERS": fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d", port, saslPort),
			"KAFKA_PROTOCOL_MAP":         "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
			"KAFKA_FORMAT_ARGS":          fmt.Sprintf("--add-scram SCRAM-SHA-512=[name=%s,password=%s]", SASLUser, SASLPassword),
			"KAFKA_EXTRA_PROPS": strings.Join([]string{
				"sasl.enabled.mechanisms=SCRAM-SHA-512",
				"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
				"listener.name.sasl_ssl.ssl.keystore.type=PEM",
				"listener.name.sasl_ssl.ssl.keystore.location=" + keystore,
			}, "\n"),
		}
	}})
	return &SASLBroker{Broker: broker, SASLAddr: fmt.Sprintf("127.0.0.1:%d", saslPort)}
}

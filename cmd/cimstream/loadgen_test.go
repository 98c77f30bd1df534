package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

// TestLoadgenUsesTheConfiguration: loadgen's client is built from the same configuration as the service's,
// so TLS and SASL settings reach it (here a CA file that does not exist is reported by its key).
func TestLoadgenUsesTheConfiguration(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ca.pem")
	code, _, errOut := runCLI(t, "", "loadgen", "--count", "1", "--set", "kafka.tls.enabled=true", "--set", "kafka.tls.caFile="+missing)
	if code != 1 || !strings.Contains(errOut, "kafka.tls.caFile") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "", "loadgen", "--count", "1", "--set", "kafka.sasl.mechanism=SCRAM-SHA-512")
	if code != 1 || !strings.Contains(errOut, "kafka.sasl.username") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestIntegrationLoadgenWithConfigFile: loadgen reaches the broker named in a configuration file.
func TestIntegrationLoadgenWithConfigFile(t *testing.T) {
	cfg := kafkatest.Config(t)
	topic := kafkatest.Topic(t, "loadgen", 1)
	code, out, errOut := runCLI(t, "", "loadgen", "--config", configFile(t, cfg), "--topics", topic, "--count", "20", "--customers", "3")
	if code != 0 || !strings.Contains(out, "sent=20 errors=0") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

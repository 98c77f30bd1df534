package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEgressErrorsNameTheKey: every invalid egress setting is reported with its dotted key.
func TestEgressErrorsNameTheKey(t *testing.T) {
	cfg := Default()
	cfg.Egress = Egress{
		Webhooks: []Webhook{
			{Channel: "web", URL: "https://connector.example.com/hook", SecretFile: "/s"},
			{Channel: "web", URL: "ftp://x", SecretFile: ""},
			{Channel: "bad name", URL: "/relative", SecretFile: "/s"},
		},
		RequestTimeout: 0, Concurrency: 0, MaxInFlight: 0,
		Retry: EgressRetry{MinBackoff: 2 * time.Second, MaxBackoff: time.Second, Deadline: -1},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid egress settings validated")
	}
	for _, key := range []string{
		"egress.requestTimeout", "egress.concurrency", "egress.maxInFlight", "egress.retry.maxBackoff", "egress.retry.deadline",
		"egress.webhooks[1].channel", "egress.webhooks[1].url", "egress.webhooks[1].secretFile",
		"egress.webhooks[2].channel", "egress.webhooks[2].url",
	} {
		if !strings.Contains(err.Error(), "config "+key+":") {
			t.Errorf("no error names %s:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "egress.webhooks[0]") {
		t.Errorf("the valid first webhook was reported: %v", err)
	}
}

// TestEgressSecretFile: the secret is read at load (trailing newline dropped, never printed); a missing
// or empty file is an error naming the key.
func TestEgressSecretFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("whsec-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := func(secretFile string) string {
		return writeFile(t, "inbound:\n  enabled: false\negress:\n  webhooks:\n    - channel: web\n      url: http://127.0.0.1:9/hook\n      secretFile: "+secretFile+"\n")
	}
	cfg, err := Load(file(secret), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Egress.Webhooks[0].Secret); got != "whsec-123" {
		t.Errorf("secret %q", got)
	}
	text, _ := cfg.YAML()
	if strings.Contains(string(text), "whsec-123") {
		t.Errorf("the secret is printed:\n%s", text)
	}
	_, err = Load(file(filepath.Join(dir, "missing")), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "config egress.webhooks[0].secretFile: cannot read") {
		t.Errorf("missing secret file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := Load(file(empty), nil, nil); err == nil || !strings.Contains(err.Error(), "egress.webhooks[0].secretFile") {
		t.Errorf("empty secret file: %v", err)
	}
}

// TestEgressSignatureV1: v1 is signed beside v2 by default (the transition); the key turns it off.
func TestEgressSignatureV1(t *testing.T) {
	if !Default().Egress.SignatureV1 {
		t.Fatal("egress.signatureV1 must default to true: connectors verifying v1 keep working")
	}
	cfg, err := Load("", nil, []string{"egress.signatureV1=false"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Egress.SignatureV1 {
		t.Error("egress.signatureV1=false left v1 on")
	}
}

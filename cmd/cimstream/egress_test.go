package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingWebhookSecretStopsRun: `run` with a webhook whose secret file does not exist exits 1 before
// touching Kafka, with one line naming egress.webhooks[0].secretFile.
func TestMissingWebhookSecretStopsRun(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cimstream.yaml")
	text := "egress:\n  webhooks:\n    - channel: web\n      url: http://127.0.0.1:9/hook\n      secretFile: " + filepath.Join(dir, "missing") + "\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "run", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "config egress.webhooks[0].secretFile: cannot read") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q; want 1 and one line naming egress.webhooks[0].secretFile", code, errOut)
	}
}

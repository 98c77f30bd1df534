package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigurationErrorsExitOneInEveryCommand: a configuration error ends every command that reads the
// configuration with exit status 1 (docs/configuration.md) and one line naming the key.
func TestConfigurationErrorsExitOneInEveryCommand(t *testing.T) {
	sample := writeMessages(t, "reply.json", validInbound)
	for _, args := range [][]string{
		{"run"}, {"dev"}, {"topics", "create"}, {"topics", "check"}, {"config", "print"},
		{"dlq", "inspect"}, {"dlq", "replay"}, {"routes", "test", sample}, {"validate"},
		{"validate", "--max-bytes", "100"}, {"loadgen", "--count", "1"},
	} {
		code, _, errOut := runCLI(t, "", append(args, "--set", "shutdown.timeout=soon")...)
		if code != 1 || !strings.Contains(errOut, "shutdown.timeout") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line naming shutdown.timeout", args, code, errOut)
		}
	}
}

// TestValidateMaxBytesStillReadsTheConfiguration: --max-bytes replaces only the limit; the configuration is
// read as by every command, so a --config that does not exist is an error, and a negative --max-bytes is a
// usage error naming the flag.
func TestValidateMaxBytesStillReadsTheConfiguration(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent.yaml")
	code, _, errOut := runCLI(t, validInbound, "validate", "--max-bytes", "100000", "--config", missing)
	if code != 1 || !strings.Contains(errOut, "nonexistent.yaml") {
		t.Errorf("--config of a missing file: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, validInbound, "validate", "--max-bytes", "-1")
	if code != 2 || !strings.Contains(errOut, "--max-bytes") {
		t.Errorf("negative --max-bytes: exit %d, stderr %q", code, errOut)
	}
	if code, out, errOut := runCLI(t, validInbound, "validate", "--max-bytes", "100000"); code != 0 {
		t.Errorf("--max-bytes alone: exit %d\n%s%s", code, out, errOut)
	}
}

// TestValidateUnreadableFileIsAFinding: a file that cannot be read is a finding on standard output like
// every other, FILE:0: in text (line 0: the file, not a message in it) and a JSON object with --format json.
func TestValidateUnreadableFileIsAFinding(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.ndjson")
	code, out, _ := runCLI(t, "", "validate", missing)
	if code != 2 || !strings.HasPrefix(out, missing+":0: (file): unreadable: ") || !strings.Contains(out, "no such file") {
		t.Errorf("text: exit %d, stdout %q", code, out)
	}
	code, out, _ = runCLI(t, "", "validate", "--format", "json", missing)
	lines := jsonLines(t, out)
	if code != 2 || len(lines) != 1 || lines[0].Source != missing || lines[0].Line != 0 || lines[0].Valid ||
		len(lines[0].Violations) != 1 || lines[0].Violations[0].Code != "unreadable" {
		t.Errorf("json: exit %d, stdout %q", code, out)
	}
	code, out, _ = runCLI(t, "", "validate", "--quiet", "--format", "github", missing)
	if code != 2 || !strings.HasPrefix(out, "::error file="+ghProperty(missing)+",title=cimstream validate%3A unreadable::") {
		t.Errorf("github: exit %d, stdout %q", code, out)
	}
}

func TestHelpForAnUnknownTopicIsAUsageError(t *testing.T) {
	for _, args := range [][]string{{"help", "bogus"}, {"help", "topics", "bogus"}} {
		code, _, errOut := runCLI(t, "", args...)
		if code != 2 || !strings.Contains(errOut, "bogus") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, out, _ := runCLI(t, "", "help", "topics", "check"); code != 0 || !strings.Contains(out, "cimstream topics check [flags]") {
		t.Errorf("help topics check: exit %d\n%s", code, out)
	}
}

// TestStartupAttemptIsCutAtTheDeadline: against a broker address that accepts connections and never
// answers, an attempt would last kafka.requestTimeout; run must still give up at startup.timeout.
func TestStartupAttemptIsCutAtTheDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	done := make(chan struct{})
	var code int
	var errOut string
	start := time.Now()
	go func() {
		defer close(done)
		code, _, errOut = runCLI(t, "", "run", "--brokers", ln.Addr().String(), "--set", "admin.address="+freeAddr(t),
			"--set", "startup.timeout=2s", "--set", "kafka.requestTimeout=60s", "--set", "kafka.dialTimeout=60s", "--log-level", "error")
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("run still waiting 15 s after start with startup.timeout=2s")
	}
	if elapsed := time.Since(start); code != 1 || elapsed > 6*time.Second || !strings.Contains(errOut, "startup.timeout (2s") {
		t.Errorf("exit %d after %v, stderr %q; want 1 soon after 2 s", code, elapsed, errOut)
	}
}

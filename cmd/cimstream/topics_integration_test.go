package main

import (
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

func configFile(t *testing.T, cfg config.Config) string {
	t.Helper()
	text, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, string(text))
}

// TestIntegrationTopicsCheckReportsDrift: a sessions changelog with the wrong partition count and no
// compaction, and a dead-letter topic with the wrong partition count, are each reported, with what the
// broker has next to what is configured; the state problems are the ones run refuses.
func TestIntegrationTopicsCheckReportsDrift(t *testing.T) {
	cfg := kafkatest.Config(t)
	kafkatest.CreateTopic(t, cfg.Topics.Sessions, 2) // not compacted, 2 partitions where 3 are configured
	kafkatest.CreateTopic(t, cfg.Topics.DeadLetter, 1)
	kafkatest.CreateRequired(t, cfg) // the others, as configured
	path := configFile(t, cfg)

	code, out, errOut := runCLI(t, "", "topics", "check", "--config", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		cfg.Topics.Sessions + ": partitions is 2, configured 3",
		cfg.Topics.Sessions + ": cleanup.policy is delete, configured compact",
		cfg.Topics.DeadLetter + ": partitions is 1, configured 3",
		"3 difference(s):",
		"cimstream run refuses to start",
		"must include compact",
		"must be equal",
		"MAX.MESSAGE.BYTES",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("topics check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, cfg.Topics.CCMInbound+": ") {
		t.Errorf("a topic as configured is reported as different:\n%s", out)
	}

	// topics create leaves existing topics alone and prints what the broker has.
	code, out, _ = runCLI(t, "", "topics", "create", "--config", path)
	if code != 1 || !strings.Contains(out, "exists") || !strings.Contains(out, "2 (configured 3) !") {
		t.Fatalf("topics create: exit %d\n%s", code, out)
	}
}

// TestIntegrationRunWarnsAboutDriftItCanLiveWith: a dead-letter topic with another partition count does not
// stop run, which logs a warning naming it, and topics check exits 1; all as configured, check exits 0.
func TestIntegrationRunWarnsAboutDriftItCanLiveWith(t *testing.T) {
	cfg := kafkatest.Config(t)
	kafkatest.CreateRequired(t, cfg)
	path := configFile(t, cfg)
	if code, out, errOut := runCLI(t, "", "topics", "check", "--config", path); code != 0 || !strings.Contains(out, "every topic as configured") {
		t.Fatalf("clean topics: exit %d\n%s%s", code, out, errOut)
	}

	drifted := kafkatest.Config(t)
	kafkatest.CreateTopic(t, drifted.Topics.DeadLetter, 1)
	kafkatest.CreateRequired(t, drifted)
	drifted.Admin.Address = freeAddr(t)
	path = configFile(t, drifted)
	if code, out, _ := runCLI(t, "", "topics", "check", "--config", path); code != 1 || !strings.Contains(out, "1 difference(s)") {
		t.Fatalf("drifted: exit %d\n%s", code, out)
	}
	bin := buildBinary(t)
	var stderr syncBuffer
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	waitFor(t, "/readyz 200", 60*time.Second, func() bool {
		code, _ := readyz(drifted.Admin.Address)
		return code == http.StatusOK
	})
	log := stderr.String()
	if !strings.Contains(log, "topic differs from the configuration") || !strings.Contains(log, drifted.Topics.DeadLetter) ||
		!strings.Contains(log, `"setting":"partitions","have":"1","configured":"3"`) {
		t.Errorf("run did not warn about %s:\n%s", drifted.Topics.DeadLetter, log)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no exit within 40 s of SIGTERM")
	}
}

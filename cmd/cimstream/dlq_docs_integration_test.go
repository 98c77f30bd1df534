package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/deadletter/tool"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
	"github.com/cimstream/cimstream/internal/stream/deadletter"
	"github.com/cimstream/cimstream/pkg/cim"
)

// dlqDocExamples returns the command lines of the sh blocks in the dead-letter section of
// docs/operations.md.
func dlqDocExamples(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kafkatest.RepoRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "## Dead letters")
	end := strings.Index(doc, "## Alerts")
	if start < 0 || end < start {
		t.Fatal("docs/operations.md has no dead-letter section before the alerts")
	}
	var cmds []string
	inSh := false
	for _, line := range strings.Split(doc[start:end], "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "```sh":
			inSh = true
		case strings.HasPrefix(trimmed, "```"):
			inSh = false
		case inSh && trimmed != "":
			cmds = append(cmds, trimmed)
		}
	}
	return cmds
}

// TestIntegrationOperationsDLQExamplesWork runs every command of the dead-letter runbook with the real
// binary, as printed, in a directory whose cimstream.yaml points at this test's topics; only the topic
// name cim.inbound.web is replaced by the test's own.
func TestIntegrationOperationsDLQExamplesWork(t *testing.T) {
	cmds := dlqDocExamples(t)
	if len(cmds) < 6 {
		t.Fatalf("found %d examples in the runbook: %q", len(cmds), cmds)
	}
	cfg := kafkatest.Config(t)
	web := kafkatest.InboundTopic(cfg, "web")
	cfg.Topics.InboundChannels = []string{web}
	kafkatest.CreateRequired(t, cfg)
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	// Dead letters as the pipelines write them: inbound ones of several causes, outbound no_route.
	valid := `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"c"}},"body":{"type":"PLAIN","markdownText":"hi"}}`
	outMsg := `{"id":"o1","header":{"sender":{"id":"a","type":"AGENT","senderName":"A"},"channelData":{"serviceIdentifier":"nowhere","channelCustomerIdentifier":"c"},"channelSessionId":"s","conversationId":"c1","customer":{"id":"x"}},"body":{"type":"PLAIN","markdownText":"hi"}}`
	now := time.Now()
	letters := []struct {
		topic, pipeline, code, value string
	}{
		{web, "inbound", "required", `{"header":{},"body":{"type":"PLAIN","markdownText":"x"}}`},
		{web, "inbound", "malformed", "not json"},
		{web, "inbound", "delivery_failed", valid},
		{web, "inbound", "too_large", valid}, // too large for an earlier, lower limit
		{cfg.Topics.CCMOutbound, "outbound", "no_route", outMsg},
	}
	var outs []stream.Output
	for i, l := range letters {
		rec := stream.Record{Topic: l.topic, Offset: int64(i), Key: []byte("k"), Value: []byte(l.value), Time: now}
		outs = append(outs, deadletter.Builder{Topic: cfg.Topics.DeadLetter, Pipeline: l.pipeline}.Build(rec, cim.Violations{{Path: "header", Code: l.code, Message: "broken"}}))
	}
	dlqWriteAll(t, tool.KafkaBroker(f), outs)
	dir := t.TempDir()
	yaml, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cimstream.yaml"), yaml, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	for _, line := range cmds {
		if !strings.HasPrefix(line, "cimstream dlq ") {
			t.Errorf("example %q does not run cimstream dlq", line)
			continue
		}
		run := strings.ReplaceAll(line, "cim.inbound.web", web)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", run)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil || strings.TrimSpace(stdout.String()) == "" {
			t.Errorf("%s: %v, stdout %q, stderr %q", line, err, stdout.String(), stderr.String())
			continue
		}
		t.Logf("%s\n%s%s", line, stdout.String(), stderr.String())
	}
	// The runbook replays cim.inbound.web's too_large dead letter (valid under this configuration's
	// limit); the others only in the dry run.
	time.Sleep(time.Second)
	recs := kafkatest.KcatConsume(t, web, kafkatest.AtLeast(1))
	if len(recs) != 1 || recs[0].Value != valid || recs[0].Headers[tool.HeaderReplayCount] != "1" {
		t.Errorf("%s holds %d records (%v), want the one too_large dead letter replayed", web, len(recs), recs)
	}
}

// dlqWriteAll writes outs, again for those that failed (a new topic's leader may not be known to every
// client yet), at most 10 times.
func dlqWriteAll(t *testing.T, b tool.Broker, outs []stream.Output) {
	t.Helper()
	for attempt := 1; len(outs) > 0; attempt++ {
		var failed []stream.Output
		var last error
		for i, err := range b.Write(context.Background(), outs) {
			if err != nil {
				failed, last = append(failed, outs[i]), err
			}
		}
		if len(failed) > 0 && attempt == 10 {
			t.Fatalf("writing dead letters: %v", last)
		}
		outs = failed
		if len(outs) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter/tool"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
)

// dlqStartInbound runs the real inbound pipeline on cfg until the returned stop is called (or the test ends).
func dlqStartInbound(t *testing.T, cfg config.Config) (stop func()) {
	t.Helper()
	f, err := kafkaclient.New(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ready := map[string]error{inbound.ReadyIngest: fmt.Errorf("pending"), inbound.ReadySessions: fmt.Errorf("pending")}
	p, err := inbound.NewPipeline(cfg, f, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Named("inbound"), inbound.Observers{Ready: func(c string, err error) {
		mu.Lock()
		ready[c] = err
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		ok := ready[inbound.ReadyIngest] == nil && ready[inbound.ReadySessions] == nil
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("inbound pipeline not ready after 45 s: %v", ready)
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("inbound pipeline stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("inbound pipeline did not stop within 30 s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// deadLetters are the records of the dead-letter topic that are dead letters (not replay markers).
func dlqDeadLetters(recs []kafkatest.KcatRecord) []kafkatest.KcatRecord {
	var out []kafkatest.KcatRecord
	for _, r := range recs {
		if _, marker := r.Headers[tool.HeaderMarker]; !marker && r.Headers["cimstream.error.codes"] != "" {
			out = append(out, r)
		}
	}
	return out
}

func dlqText(value string) string {
	var m struct {
		Body struct {
			Text string `json:"markdownText"`
		} `json:"body"`
	}
	_ = json.Unmarshal([]byte(value), &m)
	return m.Body.Text
}

func dlqConnectorMsg(id, customer, text, pad string) string {
	idField := ""
	if id != "" {
		idField = `"id":"` + id + `",`
	}
	return `{` + idField + `"header":{"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` +
		customer + `"},"pad":"` + pad + `"},"body":{"type":"PLAIN","markdownText":"` + text + `"}}`
}

// dlqReplayAccount runs `dlq replay --format json` and returns its account and the JSON lines before it.
func dlqReplayAccount(t *testing.T, load func(*cobra.Command) (config.Config, error), args ...string) (tool.Account, []tool.DecisionJSON) {
	t.Helper()
	stdout, stderr, err := execDLQ(t, load, append([]string{"replay", "--format", "json"}, args...)...)
	if err != nil {
		t.Fatalf("dlq replay %v: %v\n%s", args, err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var last struct {
		Account tool.Account `json:"account"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("account line %q: %v", lines[len(lines)-1], err)
	}
	var ds []tool.DecisionJSON
	for _, l := range lines[:len(lines)-1] {
		var d tool.DecisionJSON
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("decision line %q: %v", l, err)
		}
		ds = append(ds, d)
	}
	if !last.Account.Exact() {
		t.Errorf("dlq replay %v: account %+v is not exact", args, last.Account)
	}
	return last.Account, ds
}

func dlqWantAccount(t *testing.T, step string, got, want tool.Account) {
	t.Helper()
	want.Other = got.Other // markers are the replay's own records, checked elsewhere
	if got != want {
		t.Errorf("%s: account %+v, want %+v", step, got, want)
	}
}

// TestIntegrationDLQInspectAndReplayThroughInbound drives `cimstream dlq` against the broker while the
// real inbound pipeline runs: dead letters of several causes, inspect with filters, a dry run, a
// filtered replay of a still-invalid record, a replay whose records fail again, the loop guard, the
// fix, a replay that reaches the CCM topic, and a second replay that replays nothing. Every count is
// read from outside with kcat.
func TestIntegrationDLQInspectAndReplayThroughInbound(t *testing.T) {
	cfg := kafkatest.Config(t)
	cfg.Outbound.Enabled = false
	cfg.Topics.Partitions = 2
	cfg.Inbound.TopicRefreshInterval = time.Second
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	cfg.Kafka.Consumer.SessionTimeout = 6 * time.Second
	cfg.Kafka.Consumer.HeartbeatInterval = time.Second
	cfg.DeadLetters.MaxValueBytes = 4096
	web := kafkatest.InboundTopic(cfg, "web")
	cfg.Topics.InboundChannels = []string{web}
	kafkatest.CreateRequired(t, cfg)

	// The service first runs with a message limit too small for some valid messages.
	strict := cfg
	strict.Inbound.MaxMessageBytes = 2048
	stopStrict := dlqStartInbound(t, strict)

	// The tool validates with the fixed configuration (the default 1 MiB limit).
	load := func(*cobra.Command) (config.Config, error) { return cfg, nil }

	big := strings.Repeat("b", 3000)
	kafkatest.KcatProduce(t, web, true,
		"ann\t"+dlqConnectorMsg("", "ann", "v1", ""),
		"bob\t"+dlqConnectorMsg("", "bob", "v2", ""),
		"cy\t"+dlqConnectorMsg("", "cy", "v3", ""),
		"dan\t"+dlqConnectorMsg("", "dan", "big1", big),
		"eve\t"+dlqConnectorMsg("", "eve", "big2", big),
		"fay\t"+dlqConnectorMsg("", "fay", "huge", strings.Repeat("h", 5000)),
		"junk\tthis is not json",
		"bad\t"+`{"id":"bad-1","header":{},"body":{"type":"PLAIN","markdownText":"bad"}}`,
	)
	kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeastMessages(3))
	kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, func(recs []kafkatest.KcatRecord) bool { return len(dlqDeadLetters(recs)) >= 5 })

	// inspect: counts.
	stdout, _, err := execDLQ(t, load, "inspect", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var s tool.Summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if s.Letters != 5 || s.Selected != 5 || s.ByCode["too_large"] != 3 || s.ByCode["malformed"] != 1 || s.ByCode["required"] != 1 ||
		s.BySource[web] != 5 || s.ByPipeline["inbound"] != 5 || s.ByAge[0].Count != 5 {
		t.Errorf("inspect: %+v", s)
	}
	stdout, _, err = execDLQ(t, load, "inspect")
	if err != nil || !strings.Contains(stdout, "5 dead letters, 5 selected") || !strings.Contains(stdout, "too_large") {
		t.Errorf("inspect text: %v\n%s", err, stdout)
	}
	// inspect: filters and JSON lines.
	stdout, _, err = execDLQ(t, load, "inspect", "--code", "too_large", "--source-topic", web, "--since", "1h", "--list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	truncated := 0
	for _, l := range lines {
		var j tool.LetterJSON
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if j.Truncated == "value" && j.OriginalSize > 5000 {
			truncated++
		}
		if j.Source.Topic != web || j.Value == nil || j.Codes[0] != "too_large" {
			t.Errorf("listed dead letter %s", l)
		}
	}
	if len(lines) != 3 || truncated != 1 {
		t.Errorf("inspect --code too_large --list: %d lines, %d truncated, want 3 and 1", len(lines), truncated)
	}
	stdout, _, _ = execDLQ(t, load, "inspect", "--id", "bad-1", "--list")
	if n := strings.Count(stdout, "\n"); n != 1 || !strings.Contains(stdout, `"required"`) {
		t.Errorf("inspect --id bad-1: %q", stdout)
	}
	stdout, _, _ = execDLQ(t, load, "inspect", "--until", "1h", "--format", "json")
	if !strings.Contains(stdout, `"selected":0`) {
		t.Errorf("inspect --until 1h selected dead letters from the last minute: %s", stdout)
	}

	// dry run: nothing written.
	acct, ds := dlqReplayAccount(t, load, "--dry-run")
	dlqWantAccount(t, "dry run", acct, tool.Account{Read: 5, Replayed: 2, StillInvalid: 2, Unreplayable: 1})
	if len(ds) != 5 {
		t.Errorf("dry run listed %d decisions, want 5", len(ds))
	}
	// a filter; the still-invalid record is skipped.
	acct, _ = dlqReplayAccount(t, load, "--code", "required", "--source-topic", web)
	dlqWantAccount(t, "replay --code required", acct, tool.Account{Read: 5, StillInvalid: 1, Filtered: 4})
	if n := len(kafkatest.KcatConsume(t, web, kafkatest.AtLeast(8))); n != 8 {
		t.Fatalf("%s holds %d records after a dry run and an invalid-only replay, want the 8 produced", web, n)
	}

	// replay while the service still refuses them: they come back as dead letters, counted once more.
	acct, _ = dlqReplayAccount(t, load, "--code", "too_large")
	dlqWantAccount(t, "first replay", acct, tool.Account{Read: 5, Replayed: 2, Unreplayable: 1, Filtered: 2})
	webRecs := kafkatest.KcatConsume(t, web, kafkatest.AtLeast(10))
	replays := 0
	for _, r := range webRecs {
		if r.Headers[tool.HeaderReplayOf] == "" {
			continue
		}
		replays++
		if r.Headers[tool.HeaderReplayCount] != "1" || r.Headers[tool.HeaderReplayOf] == "" || r.Headers["cimstream.error.codes"] != "" ||
			r.Headers["cimstream.source.topic"] != "" || (r.Key != "dan" && r.Key != "eve") {
			t.Errorf("replayed record key %q headers %v", r.Key, r.Headers)
		}
	}
	if replays != 2 || len(webRecs) != 10 {
		t.Errorf("%s holds %d records, %d of them replays: want 10 and 2", web, len(webRecs), replays)
	}
	kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, func(recs []kafkatest.KcatRecord) bool { return len(dlqDeadLetters(recs)) >= 7 })

	// loop guard.
	acct, _ = dlqReplayAccount(t, load, "--code", "too_large", "--max-replays", "1")
	dlqWantAccount(t, "loop guard", acct, tool.Account{Read: 7, Guarded: 2, AlreadyReplayed: 2, Unreplayable: 1, Filtered: 2})

	// the fix: the service restarts with the larger limit; the replay reaches the CCM topic.
	stopStrict()
	dlqStartInbound(t, cfg)
	acct, _ = dlqReplayAccount(t, load, "--code", "too_large")
	dlqWantAccount(t, "replay after the fix", acct, tool.Account{Read: 7, Replayed: 2, AlreadyReplayed: 2, Unreplayable: 1, Filtered: 2})
	kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeastMessages(5)) // the replayed records went through the pipeline

	// a second replay of everything replays nothing.
	acct, _ = dlqReplayAccount(t, load)
	dlqWantAccount(t, "second replay", acct, tool.Account{Read: 7, AlreadyReplayed: 4, StillInvalid: 2, Unreplayable: 1})

	time.Sleep(2 * time.Second) // anything replayed twice would have reached the topics by now
	ccm := kafkatest.Messages(kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeastMessages(5)))
	texts := map[string]int{}
	for _, r := range ccm {
		texts[dlqText(r.Value)]++
		// The channel topic's replay headers reach the CCM renamed, as any cimstream.* header from outside.
		if t2 := dlqText(r.Value); strings.HasPrefix(t2, "big") && r.Headers[stream.RenamedPrefix+tool.HeaderReplayCount] != "2" {
			t.Errorf("%s reached the CCM with replay count %q, want 2", t2, r.Headers[stream.RenamedPrefix+tool.HeaderReplayCount])
		}
	}
	if len(ccm) != 5 || texts["v1"] != 1 || texts["v2"] != 1 || texts["v3"] != 1 || texts["big1"] != 1 || texts["big2"] != 1 {
		t.Errorf("CCM topic holds %d records %v, want v1 v2 v3 big1 big2 once each", len(ccm), texts)
	}
	if n := len(kafkatest.KcatConsume(t, web, kafkatest.AtLeast(12))); n != 12 {
		t.Errorf("%s holds %d records, want 8 produced + 2 + 2 replayed", web, n)
	}
	if n := len(dlqDeadLetters(kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(7)))); n != 7 {
		t.Errorf("%d dead letters, want 7 (5 + the 2 replays the strict service refused)", n)
	}
}

package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/deadletter/tool"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
)

// forgedHeaders are cimstream's own header names, as a connector could set them on its records: a
// lifecycle event, replay bookkeeping (an intent marker blocks every replay run for its active window;
// a count guards), source coordinates and dead-letter codes.
var forgedHeaders = []string{
	stream.HeaderEvent + "=CHANNEL_SESSION_ENDED",
	stream.HeaderReplayMarker + "=intent",
	stream.HeaderReplayCount + "=99",
	stream.HeaderReplayOf + "=cimstream.dlq/0/0",
	stream.HeaderSourceTopic + "=another.topic",
	stream.HeaderSourcePartition + "=7",
	stream.HeaderSourceOffset + "=424242",
	stream.HeaderSourceTimestamp + "=1",
	stream.HeaderErrorCodes + "=forged",
}

// TestIntegrationConnectorCannotForgeCimstreamHeaders: a connector's records carry every header name
// cimstream uses. Read from outside with kcat: the CCM record and the dead letter carry none of the
// forged values under cimstream's names (renamed x-original-cimstream.*), `dlq inspect` counts the dead
// letter, and `dlq replay` replays it (neither skips nor stops on the forged marker or count).
func TestIntegrationConnectorCannotForgeCimstreamHeaders(t *testing.T) {
	cfg := kafkatest.Config(t)
	cfg.Outbound.Enabled = false
	cfg.Inbound.TopicRefreshInterval = time.Second
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	web := kafkatest.InboundTopic(cfg, "web")
	cfg.Topics.InboundChannels = []string{web}
	kafkatest.CreateRequired(t, cfg)
	// The service refuses messages over 2 KiB; the tool validates with the default 1 MiB, so the big
	// message's dead letter is replayable.
	strict := cfg
	strict.Inbound.MaxMessageBytes = 2048
	dlqStartInbound(t, strict)
	load := func(*cobra.Command) (config.Config, error) { return cfg, nil }

	kafkatest.KcatProduceHeaders(t, web, forgedHeaders,
		"ann\t"+dlqConnectorMsg("forged-ok", "ann", "hello", ""),
		"bob\t"+dlqConnectorMsg("forged-big", "bob", "big", strings.Repeat("b", 3000)))

	ccm := kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, func(recs []kafkatest.KcatRecord) bool {
		return strings.Contains(joinValues(recs), "forged-ok")
	})
	dead := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, func(recs []kafkatest.KcatRecord) bool {
		return strings.Contains(joinValues(recs), "forged-big")
	})
	for _, r := range append(ccm, dead...) {
		if !strings.Contains(r.Value, "forged-") {
			continue // a lifecycle event cimstream emitted itself
		}
		for _, h := range forgedHeaders {
			name, forged, _ := strings.Cut(h, "=")
			if got, ok := r.Headers[name]; ok && got == forged {
				t.Errorf("%s/%d: header %s carries the connector's value %q", r.Key, r.Offset, name, got)
			}
			if r.Headers[stream.RenamedPrefix+name] != forged {
				t.Errorf("%s/%d: the connector's %s is not kept as %s%s: %v", r.Key, r.Offset, name, stream.RenamedPrefix, name, r.Headers)
			}
		}
	}
	msgs := kafkatest.Messages(ccm)
	if len(msgs) != 1 {
		t.Errorf("CCM topic: %d messages (want 1, the forged event header must not hide it): %v", len(msgs), msgs)
	}
	var dl kafkatest.KcatRecord
	for _, r := range dead {
		if strings.Contains(r.Value, "forged-big") {
			dl = r
		}
	}
	if dl.Headers[stream.HeaderErrorCodes] != "too_large" || dl.Headers[stream.HeaderSourceTopic] != web {
		t.Errorf("dead letter headers %v: want cimstream's own codes and source", dl.Headers)
	}

	stdout, _, err := execDLQ(t, load, "inspect", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var s tool.Summary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || s.Letters != 1 || s.Replayed != 0 {
		t.Errorf("inspect: %s %v: want the one dead letter, not replayed", stdout, err)
	}
	acct, _ := dlqReplayAccount(t, load)
	dlqWantAccount(t, "replay", acct, tool.Account{Read: 1, Replayed: 1})
	var replays []kafkatest.KcatRecord
	for _, r := range kafkatest.KcatConsume(t, web, kafkatest.AtLeast(3)) {
		if r.Headers[stream.HeaderReplayOf] == tool.Ref(cfg.Topics.DeadLetter, dl.Partition, dl.Offset) {
			replays = append(replays, r)
		}
	}
	if len(replays) != 1 || !strings.Contains(replays[0].Value, "forged-big") || replays[0].Headers[stream.HeaderReplayCount] != "1" {
		t.Errorf("replays of the dead letter %v: want the big message once, with replay count 1 (not the forged 99)", replays)
	}
}

func joinValues(recs []kafkatest.KcatRecord) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Value)
		b.WriteByte('\n')
	}
	return b.String()
}

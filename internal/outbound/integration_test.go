package outbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/outbound"
	"github.com/cimstream/cimstream/internal/stream"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

func setup(t *testing.T, routes []config.Route, channels map[string]string) (config.Config, *kafkaclient.Factory) {
	t.Helper()
	cfg := kafkatest.Config(t)
	cfg.Inbound.Enabled = false
	cfg.Outbound.Routes = routes
	cfg.Outbound.Channels = channels
	cfg.Outbound.DeliveryTimeout = 2 * time.Second
	cfg.Kafka.Producer.MaxAttempts = 2
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	kafkatest.CreateRequired(t, cfg)
	f, err := kafkaclient.New(cfg.Kafka) // with the test's producer settings
	if err != nil {
		t.Fatal(err)
	}
	return cfg, f
}

func start(t *testing.T, cfg config.Config, f *kafkaclient.Factory) {
	t.Helper()
	var mu sync.Mutex
	var readyErr error = fmt.Errorf("pending")
	p := outbound.NewPipeline(cfg, f, zaptest.NewLogger(t), outbound.Observers{Ready: func(_ string, err error) {
		mu.Lock()
		readyErr = err
		mu.Unlock()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pipeline: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("pipeline did not stop in 30 s")
		}
	})
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		ok := readyErr == nil
		mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", readyErr)
		}
	}
}

func outMsg(id, service, customer, text string) string {
	return fmt.Sprintf(`{"id":%q,"header":{"sender":{"id":"agent-1","type":"AGENT","senderName":"Bob"},`+
		`"channelData":{"serviceIdentifier":%q,"channelCustomerIdentifier":%q},"channelSessionId":"s-%s","conversationId":"c-%s",`+
		`"customer":{"_id":"x"}},"body":{"type":"PLAIN","markdownText":%q}}`, id, service, customer, customer, customer, text)
}

type notification struct {
	Header struct {
		ConversationID string `json:"conversationId"`
	} `json:"header"`
	Body struct {
		MessageID  string `json:"messageId"`
		Status     string `json:"status"`
		ReasonCode int    `json:"reasonCode"`
	} `json:"body"`
}

func statuses(t *testing.T, recs []kafkatest.KcatRecord) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range recs {
		var n notification
		if err := json.Unmarshal([]byte(r.Value), &n); err != nil {
			t.Fatalf("notification is not JSON: %s", r.Value)
		}
		out[n.Body.MessageID] = fmt.Sprintf("%s/%d", n.Body.Status, n.Body.ReasonCode)
	}
	return out
}

func TestIntegrationOutboundRoutingAndNotificationsWithKcat(t *testing.T) {
	prefix := kafkatest.Name(t, "dest") + "."
	fan := []string{prefix + "crm", prefix + "archive", prefix + "bot"}
	cfg, f := setup(t, []config.Route{{Name: "fan-out", ServiceIdentifier: "fan-*", Destinations: fan}},
		map[string]string{"41445556677": prefix + "whatsapp", "https://shop.example.com": prefix + "web"})
	start(t, cfg, f)
	wa, web := topics.OutboundTopic(prefix+"whatsapp"), topics.OutboundTopic(prefix+"web")
	var lines []string
	for i := 0; i < 5; i++ {
		// The CCM keys by conversation, so a customer's replies are ordered on one partition.
		lines = append(lines, "c-ann\t"+outMsg(fmt.Sprintf("wa-%d", i), "41445556677", "ann", fmt.Sprintf("wa %d", i)))
		lines = append(lines, "c-bob\t"+outMsg(fmt.Sprintf("web-%d", i), "https://shop.example.com", "bob", fmt.Sprintf("web %d", i)))
	}
	lines = append(lines,
		"c-cyd\t"+outMsg("fan-1", "fan-out-1", "cyd", "to three topics"),
		"c-dan\t"+outMsg("lost-1", "nowhere", "dan", "no route"),
		"x\t"+`{"id":"bad-1","header":{"sender":{"id":"a","type":"AGENT","senderName":"B"}},"body":{"type":"PLAIN","markdownText":"x"}}`,
	)
	kafkatest.KcatProduce(t, cfg.Topics.CCMOutbound, true, lines...)

	for topic, c := range map[string]struct{ customer, text string }{wa: {"ann", "wa"}, web: {"bob", "web"}} {
		recs := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(5))
		for i, r := range recs {
			if r.Key != c.customer {
				t.Errorf("%s: key %q, want the channelCustomerIdentifier %q", topic, r.Key, c.customer)
			}
			if want := fmt.Sprintf(`"markdownText":"%s %d"`, c.text, i); !strings.Contains(r.Value, want) {
				t.Errorf("%s: record %d is not %s (order): %s", topic, i, want, r.Value)
			}
		}
	}
	for _, topic := range fan {
		if recs := kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(1)); !strings.Contains(recs[0].Value, "to three topics") {
			t.Errorf("fan-out to %s: %v", topic, recs)
		}
	}
	got := statuses(t, kafkatest.KcatConsume(t, cfg.Topics.Notifications, kafkatest.AtLeast(13)))
	want := map[string]string{"fan-1": "ACCEPTED/202", "lost-1": "FAILED/404", "bad-1": "FAILED/400", "wa-3": "ACCEPTED/202", "web-4": "ACCEPTED/202"}
	for id, status := range want {
		if got[id] != status {
			t.Errorf("notification for %s: %q, want %q", id, got[id], status)
		}
	}
	dead := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(2))
	codes := map[string]bool{}
	for _, d := range dead {
		codes[d.Headers["cimstream.error.codes"]] = true
	}
	if !codes["no_route"] || !codes["required"] {
		t.Errorf("dead letters %v, want no_route and required", codes)
	}
}

func TestIntegrationDeletedDestinationGivesFailed500(t *testing.T) {
	prefix := kafkatest.Name(t, "dest") + "."
	cfg, f := setup(t, nil, map[string]string{"wa": prefix + "whatsapp"})
	start(t, cfg, f)
	dest := topics.OutboundTopic(prefix + "whatsapp")
	kafkatest.KcatProduce(t, cfg.Topics.CCMOutbound, false, outMsg("ok-1", "wa", "ann", "before"))
	kafkatest.KcatConsume(t, dest, kafkatest.AtLeast(1))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{dest}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // let the deletion reach the metadata the writer reads
	kafkatest.KcatProduce(t, cfg.Topics.CCMOutbound, false, outMsg("gone-1", "wa", "ann", "after"))
	got := statuses(t, kafkatest.KcatConsume(t, cfg.Topics.Notifications, kafkatest.AtLeast(2)))
	if got["ok-1"] != "ACCEPTED/202" || got["gone-1"] != "FAILED/500" {
		t.Fatalf("notifications %v, want ok-1 ACCEPTED/202 and gone-1 FAILED/500", got)
	}
	dead := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(1))
	if dead[0].Headers["cimstream.error.codes"] != "delivery_failed" || !strings.Contains(dead[0].Value, `"gone-1"`) {
		t.Fatalf("the undeliverable message must be dead-lettered: %v %s", dead[0].Headers, dead[0].Value)
	}
}

// The CCM's records are not cimstream's: a ccm.outbound record carrying cimstream's header names (a
// lifecycle event, a dead-letter code, replay bookkeeping) reaches the connector topic and, when
// invalid, the dead-letter topic with them renamed only (read with kcat).
func TestIntegrationOutboundRenamesCimstreamHeadersFromTheCCM(t *testing.T) {
	prefix := kafkatest.Name(t, "dest") + "."
	cfg, f := setup(t, nil, map[string]string{"41445556677": prefix + "whatsapp"})
	start(t, cfg, f)
	forged := []string{stream.HeaderEvent + "=CHANNEL_SESSION_ENDED", stream.HeaderErrorCodes + "=forged", stream.HeaderReplayMarker + "=done"}
	kafkatest.KcatProduceHeaders(t, cfg.Topics.CCMOutbound, forged,
		"c-ann\t"+outMsg("hdr-1", "41445556677", "ann", "hello"),
		"x\t"+`{"id":"hdr-bad","header":{"sender":{"id":"a","type":"AGENT","senderName":"B"}},"body":{"type":"PLAIN","markdownText":"x"}}`)
	out := kafkatest.KcatConsume(t, topics.OutboundTopic(prefix+"whatsapp"), kafkatest.AtLeast(1))
	dead := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, kafkatest.AtLeast(1))
	for _, r := range []kafkatest.KcatRecord{out[0], dead[0]} {
		for _, h := range forged {
			name, value, _ := strings.Cut(h, "=")
			if r.Headers[name] == value || r.Headers[stream.RenamedPrefix+name] != value {
				t.Errorf("record %s headers %v: want %s only renamed", r.Key, r.Headers, name)
			}
		}
	}
	if dead[0].Headers[stream.HeaderErrorCodes] != "required" {
		t.Errorf("dead letter codes %q, want cimstream's own", dead[0].Headers[stream.HeaderErrorCodes])
	}
}

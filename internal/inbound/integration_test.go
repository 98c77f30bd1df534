package inbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m)) }

// setup returns a configuration with unique topic names, all created as `cimstream topics create` does.
func setup(t *testing.T, partitions int, channels ...string) (config.Config, *kafkaclient.Factory) {
	t.Helper()
	cfg := kafkatest.Config(t)
	cfg.Topics.Partitions = partitions
	cfg.Outbound.Enabled = false
	cfg.Inbound.TopicRefreshInterval = time.Second
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	cfg.Kafka.Consumer.SessionTimeout = 6 * time.Second
	cfg.Kafka.Consumer.HeartbeatInterval = time.Second
	for _, ch := range channels {
		cfg.Topics.InboundChannels = append(cfg.Topics.InboundChannels, kafkatest.InboundTopic(cfg, ch))
	}
	kafkatest.CreateRequired(t, cfg)
	f := kafkatest.Factory(t)
	return cfg, f
}

// instance is one running inbound pipeline, as one cimstream process would run it.
type instance struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg config.Config, f *kafkaclient.Factory) *instance {
	t.Helper()
	return startWith(t, cfg, f, inbound.Observers{})
}

// startWith is start with observers (its Ready is the test's).
func startWith(t *testing.T, cfg config.Config, f *kafkaclient.Factory, obs inbound.Observers) *instance {
	t.Helper()
	var mu sync.Mutex
	ready := map[string]error{inbound.ReadyIngest: fmt.Errorf("pending"), inbound.ReadySessions: fmt.Errorf("pending")}
	obs.Ready = func(c string, err error) {
		mu.Lock()
		ready[c] = err
		mu.Unlock()
	}
	p, err := inbound.NewPipeline(cfg, f, zaptest.NewLogger(t).Named(t.Name()), obs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- p.Run(ctx) }()
	deadline := time.Now().Add(45 * time.Second)
	for {
		mu.Lock()
		ok := ready[inbound.ReadyIngest] == nil && ready[inbound.ReadySessions] == nil
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline not ready after 45 s: %v", ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { in.stop(t) })
	return in
}

func (in *instance) stop(t *testing.T) {
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("pipeline stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("pipeline did not stop within 30 s")
	}
}

// out is one consumed record.
type out struct {
	Partition int
	Offset    int64
	Key       string
	Value     string
	Headers   map[string]string
	msg       map[string]any
}

func (o out) header(field string) string {
	h, _ := o.msg["header"].(map[string]any)
	s, _ := h[field].(string)
	return s
}

func (o out) id() string { s, _ := o.msg["id"].(string); return s }

func (o out) text() string {
	b, _ := o.msg["body"].(map[string]any)
	s, _ := b["markdownText"].(string)
	return s
}

func kcatProduce(t *testing.T, topic string, keyed bool, lines ...string) {
	t.Helper()
	kafkatest.KcatProduce(t, topic, keyed, lines...)
}

// toOuts parses the messages among recs; session lifecycle events (checked by the tests about them) are
// left out.
func toOuts(recs []kafkatest.KcatRecord) []out {
	var outs []out
	for _, o := range toAll(recs) {
		if o.event() == "" {
			outs = append(outs, o)
		}
	}
	return outs
}

// toAll parses every record, events included.
func toAll(recs []kafkatest.KcatRecord) []out {
	outs := make([]out, len(recs))
	for i, r := range recs {
		outs[i] = out{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: r.Headers}
		_ = json.Unmarshal([]byte(r.Value), &outs[i].msg)
	}
	return outs
}

// event is the lifecycle event a record is ("" for a message).
func (o out) event() string { return o.Headers[inbound.HeaderEvent] }

// kcatConsume reads a topic from the beginning with kcat until want messages (events aside) arrived
// (bounded).
func kcatConsume(t *testing.T, topic string, want int) []out {
	t.Helper()
	return toOuts(kafkatest.KcatConsume(t, topic, func(recs []kafkatest.KcatRecord) bool { return len(toOuts(recs)) >= want }))
}

// kcatConsumeUnique waits until want distinct texts arrived (duplicates do not count).
func kcatConsumeUnique(t *testing.T, topic string, want int) []out {
	t.Helper()
	return toOuts(kafkatest.KcatConsume(t, topic, func(recs []kafkatest.KcatRecord) bool {
		texts := map[string]bool{}
		for _, o := range toOuts(recs) {
			texts[o.text()] = true
		}
		return len(texts) >= want
	}))
}

func msg(customer, text string, extra ...string) string {
	header := `"sender":{"id":"web-1","type":"connector","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` + customer + `"}`
	for _, e := range extra {
		header += "," + e
	}
	return `{"header":{` + header + `},"body":{"type":"PLAIN","markdownText":"` + text + `"}}`
}

// byText indexes CCM records by their text, and checks each text appears once.
func byText(t *testing.T, outs []out) map[string]out {
	t.Helper()
	m := map[string]out{}
	for _, o := range outs {
		if prev, dup := m[o.text()]; dup && prev.Value != o.Value {
			t.Errorf("duplicate of %q differs:\n%s\n%s", o.text(), prev.Value, o.Value)
		}
		m[o.text()] = o
	}
	return m
}

func TestIntegrationInboundEndToEndWithKcat(t *testing.T) {
	cfg, f := setup(t, 3, "web")
	start(t, cfg, f)
	topic := kafkatest.InboundTopic(cfg, "web")
	kcatProduce(t, topic, true,
		"ann\t"+msg("ann", "a1", `"intent":"START_CHAT"`),
		"ann\t"+msg("ann", "a2", `"x-trace":{"span":[1,2,{"deep":true}]}`),
		"ann\t"+msg("ann", "a3", `"intent":"END_CHAT"`),
		"ann\t"+msg("ann", "a4"),
		"bob\t"+msg("bob", "b1", `"customer":{"id":"crm-7","tier":"gold"}`),
		"bot\t"+`{"id":"r-1","header":{"sender":{"id":"bot","type":"BOT","senderName":"Rasa"},"conversationId":"conv-x","channelSessionId":"sess-x"},"body":{"type":"PLAIN","markdownText":"r1"}}`,
		"ann\t"+`{"header":{"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"ann"}},"body":{"type":"DELIVERYNOTIFICATION","messageId":"m-9","status":"READ","reasonCode":200}}`,
		"bad\t"+`{"header":{},"body":{"type":"PLAIN","markdownText":"x"}}`,
		"junk\tthis is not json",
	)
	ccm := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 6))
	dlq := kcatConsume(t, cfg.Topics.DeadLetter, 2)
	notes := kcatConsume(t, cfg.Topics.Notifications, 1)

	a1, a2, a3, a4 := ccm["a1"], ccm["a2"], ccm["a3"], ccm["a4"]
	if a1.header("channelSessionId") == "" || a1.header("conversationId") == "" {
		t.Fatalf("a1 not enriched: %s", a1.Value)
	}
	for _, o := range []out{a2, a3} {
		if o.header("channelSessionId") != a1.header("channelSessionId") || o.header("conversationId") != a1.header("conversationId") {
			t.Errorf("%s is in another session than a1 (START_CHAT opened it)", o.text())
		}
	}
	if a4.header("channelSessionId") == a3.header("channelSessionId") {
		t.Error("the message after END_CHAT must open a new session")
	}
	if !(a1.Partition == a2.Partition && a2.Partition == a3.Partition && a1.Offset < a2.Offset && a2.Offset < a3.Offset) {
		t.Errorf("ann's session messages out of order: %d/%d %d/%d %d/%d", a1.Partition, a1.Offset, a2.Partition, a2.Offset, a3.Partition, a3.Offset)
	}
	for _, o := range []out{a1, a2, a3, a4} {
		if o.Key != o.header("conversationId") {
			t.Errorf("%s keyed %q, want its conversationId", o.text(), o.Key)
		}
		if o.id() == "" {
			t.Errorf("%s has no id", o.text())
		}
		h := o.msg["header"].(map[string]any)
		if s := h["sender"].(map[string]any)["type"]; s != "CONNECTOR" {
			t.Errorf("sender.type = %v, want upper case", s)
		}
		if _, ok := h["timestamp"].(float64); !ok {
			t.Errorf("timestamp not an integer: %v", h["timestamp"])
		}
		cust := h["customer"].(map[string]any)
		if cust["isAnonymous"] != true || cust["id"] == "" {
			t.Errorf("customer not derived: %v", cust)
		}
	}
	if !strings.Contains(a2.Value, `"x-trace":{"span":[1,2,{"deep":true}]}`) {
		t.Errorf("unknown field not preserved: %s", a2.Value)
	}
	if b1 := ccm["b1"]; !strings.Contains(b1.Value, `"customer":{"id":"crm-7","tier":"gold"}`) {
		t.Errorf("a customer given by the connector must be kept as is: %s", b1.Value)
	}
	if r1 := ccm["r1"]; r1.header("conversationId") != "conv-x" || r1.header("channelSessionId") != "sess-x" || r1.Key != "conv-x" || r1.id() != "r-1" {
		t.Errorf("reply without channelData must pass through keyed by its conversation: key %q %s", r1.Key, r1.Value)
	}
	codes := map[string]bool{}
	for _, d := range dlq {
		codes[d.Headers["cimstream.error.codes"]] = true
		if d.Headers["cimstream.source.topic"] != topic || d.Headers["cimstream.source.offset"] == "" || d.Headers["cimstream.error.detail"] == "" {
			t.Errorf("dead letter lacks its origin or detail: %v", d.Headers)
		}
		if d.Key == "junk" && d.Value != "this is not json" {
			t.Errorf("dead letter changed the value: %q", d.Value)
		}
	}
	if !codes["malformed"] || !codes["required"] {
		t.Errorf("dead-letter codes %v, want malformed and required", codes)
	}
	if len(notes) != 1 || !strings.Contains(notes[0].Value, `"DELIVERYNOTIFICATION"`) {
		t.Errorf("connector receipt must go to notifications: %v", notes)
	}
}

func TestIntegrationIdleTimeoutOpensNewSession(t *testing.T) {
	cfg, f := setup(t, 1, "sms")
	cfg.Inbound.SessionIdleTimeout = time.Second
	start(t, cfg, f)
	topic := kafkatest.InboundTopic(cfg, "sms")
	kcatProduce(t, topic, true, "c\t"+msg("c", "i1"), "c\t"+msg("c", "i2"))
	time.Sleep(1500 * time.Millisecond)
	kcatProduce(t, topic, true, "c\t"+msg("c", "i3"))
	ccm := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 3))
	if ccm["i1"].header("channelSessionId") != ccm["i2"].header("channelSessionId") {
		t.Error("i1 and i2 arrived together and share a session")
	}
	if ccm["i3"].header("channelSessionId") == ccm["i2"].header("channelSessionId") {
		t.Error("i3 came after the idle timeout and must open a new session")
	}
}

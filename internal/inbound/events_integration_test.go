package inbound_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// expiryBound is how long after its timeout a quiet session's EXPIRED may take to reach the CCM topic
// in live traffic (docs/inbound.md states the typical figure: the upstream watermark is read every
// second and expiry runs every commit interval).
const expiryBound = 10 * time.Second

// A customer goes quiet on a channel with a 2 s idle timeout, and nothing else arrives anywhere: the CCM
// sees STARTED, the message, then EXPIRED within seconds of the timeout on the wall clock, dated last
// activity + timeout. A customer of a channel with the default (1 h) timeout, quiet as long, gets no end.
func TestIntegrationQuietSessionExpiresLive(t *testing.T) {
	cfg, f := setup(t, 2, "web")
	const idle = 2 * time.Second
	cfg.Inbound.SessionIdleTimeout = time.Hour
	cfg.Inbound.SessionIdleTimeouts = []config.IdleTimeout{{ServiceIdentifier: "fast*", Timeout: idle}}
	start(t, cfg, f)
	topic := kafkatest.InboundTopic(cfg, "web")
	quiet := strings.Replace(msg("quiet", "bye for now"), `"serviceIdentifier":"web"`, `"serviceIdentifier":"fast-web"`, 1)
	kcatProduce(t, topic, true, "quiet\t"+quiet, "slow\t"+msg("slow", "still here"))

	var seenAt time.Time
	recs := kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, func(recs []kafkatest.KcatRecord) bool {
		for _, r := range recs {
			if r.Headers[inbound.HeaderEvent] == inbound.EventExpired {
				seenAt = time.Now()
				return true
			}
		}
		return false
	})
	all := toAll(recs)
	var message out
	for _, o := range all {
		if o.text() == "bye for now" {
			message = o
		}
	}
	conv := message.header("conversationId")
	if conv == "" {
		t.Fatalf("the message did not reach the CCM with ids: %v", all)
	}
	// Keep reading a little: nothing else may follow.
	time.Sleep(2 * time.Second)
	all = toAll(kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeast(len(recs))))

	var quietView, slowView []string
	var expired out
	for _, o := range all {
		kind := o.event()
		if kind == "" {
			kind = o.text()
		}
		if o.Key != o.header("conversationId") {
			t.Errorf("record keyed %q, conversationId %q", o.Key, o.header("conversationId"))
		}
		switch o.header("conversationId") {
		case conv:
			quietView = append(quietView, kind)
			if o.event() == inbound.EventExpired {
				expired = o
			}
		default:
			slowView = append(slowView, kind)
		}
	}
	if strings.Join(quietView, ",") != inbound.EventStarted+",bye for now,"+inbound.EventExpired {
		t.Fatalf("the quiet customer's conversation on the CCM topic: %v", quietView)
	}
	if strings.Join(slowView, ",") != inbound.EventStarted+",still here" {
		t.Fatalf("a 1 h session must not end: %v", slowView)
	}
	sentAt := int64(message.msg["header"].(map[string]any)["timestamp"].(float64))
	expiredAt := int64(expired.msg["header"].(map[string]any)["timestamp"].(float64))
	if expiredAt != sentAt+idle.Milliseconds() {
		t.Errorf("EXPIRED dated %d, want last activity + timeout = %d", expiredAt, sentAt+idle.Milliseconds())
	}
	if !strings.Contains(expired.Value, `"reasonCode":"CUSTOMER_INACTIVITY_TIMEOUT"`) || !strings.Contains(expired.Value, `"serviceIdentifier":"fast-web"`) {
		t.Errorf("EXPIRED without its reason or channelData: %s", expired.Value)
	}
	late := seenAt.Sub(time.UnixMilli(sentAt + idle.Milliseconds()))
	t.Logf("EXPIRED reached the CCM topic %v after the timeout passed (bound %v)", late.Round(10*time.Millisecond), expiryBound)
	if late > expiryBound {
		t.Errorf("EXPIRED came %v after the timeout, more than %v", late, expiryBound)
	}
}

// step is one scripted connector record: a customer's message at an offset from the script's start.
type step struct {
	customer, id, text, intent string
	at                         time.Duration
}

// lifecycleScript has every kind of end: an idle gap (EXPIRED at the next message), a START_CHAT
// replacing an open session, END_CHAT, and a customer who goes quiet (EXPIRED proactively).
var lifecycleScript = []step{
	{"ann", "a1", "ann 1", "", 0},
	{"bob", "b1", "bob 1", "START_CHAT", 0},
	{"cy", "c1", "cy 1", "", 0},
	{"ann", "a2", "ann 2", "", 500 * time.Millisecond},
	{"bob", "b2", "bob 2", "START_CHAT", time.Second},
	{"bob", "b3", "bob 3", "", 1500 * time.Millisecond},
	{"ann", "a3", "ann 3", "", 3500 * time.Millisecond}, // 3 s after ann 2: the 2 s timeout passed
	{"ann", "a4", "ann 4", "END_CHAT", 4 * time.Second},
}

// produceScript writes the script to topic with record times base + at, keyed by customer; paced in
// real time when live, all at once otherwise.
func produceScript(t *testing.T, f *kafkaclient.Factory, topic string, base time.Time, live bool) {
	t.Helper()
	w := f.Writer(topic)
	defer w.Close()
	began := time.Now()
	for _, s := range lifecycleScript {
		if live {
			time.Sleep(time.Until(began.Add(s.at)))
		}
		extra := []string{`"timestamp":null`}
		if s.intent != "" {
			extra = append(extra, `"intent":"`+s.intent+`"`)
		}
		value := strings.Replace(msg(s.customer, s.text, extra...), `{"header"`, `{"id":"`+s.id+`","header"`, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte(s.customer), Value: []byte(value), Time: base.Add(s.at)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// ccmLifecycle reads the CCM topic until every scripted message and want events arrived, and returns
// per customer what the CCM saw in partition order: texts, events with their reason, and each
// record's header.timestamp relative to base.
func ccmLifecycle(t *testing.T, topic string, wantEvents int, base time.Time) map[string][]string {
	t.Helper()
	recs := kafkatest.KcatConsume(t, topic, func(recs []kafkatest.KcatRecord) bool {
		return len(kafkatest.Messages(recs)) >= len(lifecycleScript) && len(recs)-len(kafkatest.Messages(recs)) >= wantEvents
	})
	time.Sleep(time.Second) // nothing more may come
	recs = kafkatest.KcatConsume(t, topic, kafkatest.AtLeast(len(recs)))
	view := map[string][]string{}
	for _, o := range toAll(recs) {
		h := o.msg["header"].(map[string]any)
		customer := h["channelData"].(map[string]any)["channelCustomerIdentifier"].(string)
		ts := int64(h["timestamp"].(float64)) - base.UnixMilli()
		what := o.text()
		if e := o.event(); e != "" {
			what = e
			if nd, ok := o.msg["body"].(map[string]any)["notificationData"].(map[string]any); ok {
				what += "/" + nd["reasonCode"].(string)
			}
		}
		view[customer] = append(view[customer], fmt.Sprintf("%s@%d", what, ts))
	}
	return view
}

// The same traffic, once live and once three hours old (produced before cimstream starts), gives the
// CCM the same events, in the same order relative to the messages, dated alike.
func TestIntegrationBacklogEventsEqualLive(t *testing.T) {
	const idle = 2 * time.Second
	// ann: STARTED, EXPIRED (idle gap), STARTED, ENDED (END_CHAT); bob: STARTED, ENDED (replaced), STARTED,
	// EXPIRED (quiet); cy: STARTED, EXPIRED (quiet).
	const events = 10
	run := func(base time.Time, live bool) map[string][]string {
		cfg, f := setup(t, 2, "web")
		cfg.Inbound.SessionIdleTimeout = idle
		topic := kafkatest.InboundTopic(cfg, "web")
		if live {
			start(t, cfg, f)
			produceScript(t, f, topic, base, true)
		} else {
			produceScript(t, f, topic, base, false)
			start(t, cfg, f)
		}
		return ccmLifecycle(t, cfg.Topics.CCMInbound, events, base)
	}
	live := run(time.Now(), true)
	backlog := run(time.Now().Add(-3*time.Hour), false)
	for _, c := range []string{"ann", "bob", "cy"} {
		t.Logf("%s live:    %v", c, live[c])
		if strings.Join(live[c], " ") != strings.Join(backlog[c], " ") {
			t.Errorf("%s backlog: %v", c, backlog[c])
		}
	}
	want := map[string]string{
		"ann": "CHANNEL_SESSION_STARTED@0 ann 1@0 ann 2@500 CHANNEL_SESSION_EXPIRED/CUSTOMER_INACTIVITY_TIMEOUT@2500 CHANNEL_SESSION_STARTED@3500 ann 3@3500 ann 4@4000 CHANNEL_SESSION_ENDED/END_CHAT@4000",
		"bob": "CHANNEL_SESSION_STARTED@0 bob 1@0 CHANNEL_SESSION_ENDED/NEW_SESSION_STARTED@1000 CHANNEL_SESSION_STARTED@1000 bob 2@1000 bob 3@1500 CHANNEL_SESSION_EXPIRED/CUSTOMER_INACTIVITY_TIMEOUT@3500",
		"cy":  "CHANNEL_SESSION_STARTED@0 cy 1@0 CHANNEL_SESSION_EXPIRED/CUSTOMER_INACTIVITY_TIMEOUT@2000",
	}
	for c, w := range want {
		if got := strings.Join(live[c], " "); got != w {
			t.Errorf("%s saw %s\nwant     %s", c, got, w)
		}
	}
}

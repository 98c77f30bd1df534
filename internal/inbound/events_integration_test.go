package inbound_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
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

package egress_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/kafkaedge/topics"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// TestIntegrationEgressDeadConnectorHoldsUpNoOtherChannel: two webhook channels, one whose connector
// answers 503 to everything and one healthy: every message of the healthy channel is delivered while the
// failing one's are being retried (its deadline far away).
func TestIntegrationEgressDeadConnectorHoldsUpNoOtherChannel(t *testing.T) {
	live := newConnector(t, func(request, int) (int, string) { return 202, "" })
	dead := newConnector(t, func(request, int) (int, string) { return 503, "down" })
	cfg := kafkatest.Config(t)
	cfg.Inbound.Enabled, cfg.Outbound.Enabled = false, false
	cfg.Topics.Partitions = 2
	cfg.Kafka.Consumer.CommitInterval = 100 * time.Millisecond
	cfg.Egress.Retry = config.EgressRetry{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Deadline: time.Minute}
	cfg.Egress.Webhooks = []config.Webhook{
		{Channel: kafkatest.Name(t, "dead"), URL: dead.srv.URL, SecretFile: "unused", Secret: dead.secret},
		{Channel: kafkatest.Name(t, "live"), URL: live.srv.URL, SecretFile: "unused", Secret: live.secret},
	}
	kafkatest.CreateRequired(t, cfg)
	run(t, cfg)
	var deadLines, liveLines []string
	for i := 0; i < 50; i++ {
		cust := fmt.Sprintf("cust-%d", i%10)
		deadLines = append(deadLines, msg(fmt.Sprintf("dead-%d", i), cust, fmt.Sprint(i/10)))
		liveLines = append(liveLines, msg(fmt.Sprintf("live-%d", i), cust, fmt.Sprint(i/10)))
	}
	kafkatest.KcatProduce(t, topics.OutboundTopic(cfg.Egress.Webhooks[0].Channel), true, deadLines...)
	kafkatest.KcatProduce(t, topics.OutboundTopic(cfg.Egress.Webhooks[1].Channel), true, liveLines...)
	live.waitFor(t, "every message of the healthy channel", 30*time.Second, func([]request) bool { return len(live.accepted()) == len(liveLines) })
	for _, r := range live.requests() {
		if r.ID[:4] != "live" {
			t.Fatalf("the healthy connector got %s", r.ID)
		}
	}
	dead.waitFor(t, "the failing channel to be retried", 10*time.Second, func(rs []request) bool { return len(rs) > 10 })
	if n := len(dead.accepted()); n != 0 {
		t.Fatalf("the failing connector accepted %d", n)
	}
}

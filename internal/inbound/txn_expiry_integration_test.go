package inbound_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/config"
	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// A connector leaves a transaction open on channel A's topic (a customer's message in it): channel B's
// quiet session, on another sessions partition, still expires within seconds of its idle timeout. The
// open transaction holds only the sessions its records can reach; once it commits, its message reaches
// the CCM.
func TestIntegrationOpenTransactionHoldsOnlyItsSessions(t *testing.T) {
	cfg, f := setup(t, 2, "web", "sms")
	cfg.Inbound.SessionIdleTimeout = time.Hour
	cfg.Inbound.SessionIdleTimeouts = []config.IdleTimeout{{ServiceIdentifier: "quick-*", Timeout: 2 * time.Second}}
	start(t, cfg, f)
	web, sms := kafkatest.InboundTopic(cfg, "web"), kafkatest.InboundTopic(cfg, "sms")

	held := kafkaedge.HomePartition([]byte("ann"), 2)
	quiet := ""
	for i := 0; quiet == ""; i++ {
		if c := fmt.Sprint("bob-", i); kafkaedge.HomePartition([]byte(c), 2) != held {
			quiet = c
		}
	}
	p := kafkatest.NewTxnProducer(t)
	p.Begin()
	p.Send(web, held, "ann", msg("ann", "in the open transaction"))
	bob := strings.Replace(msg(quiet, "bye for now"), `"serviceIdentifier":"web"`, `"serviceIdentifier":"quick-sms"`, 1)
	kafkatest.KcatProducePartition(t, sms, 1-held, bob)

	expired := false
	for deadline := time.Now().Add(20 * time.Second); !expired && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		for _, r := range kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, func([]kafkatest.KcatRecord) bool { return true }) {
			if r.Headers[inbound.HeaderEvent] == inbound.EventExpired && strings.Contains(r.Value, quiet) {
				expired = true
			}
		}
	}
	if !expired {
		t.Fatalf("channel B's quiet session did not expire within 20 s while channel A's transaction was open")
	}
	if _, ok := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 1))["in the open transaction"]; ok {
		t.Fatal("a message of a transaction still open reached the CCM")
	}
	p.Commit()
	kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, func(recs []kafkatest.KcatRecord) bool {
		_, ok := byText(t, toOuts(recs))["in the open transaction"]
		return ok
	})
}

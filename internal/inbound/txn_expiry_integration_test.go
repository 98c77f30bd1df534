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

// A connector leaves a transaction open on channel A's topic (a customer's message in it). Channel B's
// quiet session, on another sessions partition, still expires within seconds of its idle timeout; a
// session on the sessions partition the open transaction's record goes to (its record written just
// before the transaction) does not expire while the transaction is open, however long its idle timeout
// has passed, and expires once it commits. The open transaction holds exactly the sessions its records
// can reach; once it commits, its message reaches the CCM.
func TestIntegrationOpenTransactionHoldsOnlyItsSessions(t *testing.T) {
	cfg, f := setup(t, 2, "web", "sms")
	cfg.Inbound.SessionIdleTimeout = time.Hour
	cfg.Inbound.SessionIdleTimeouts = []config.IdleTimeout{{ServiceIdentifier: "quick-*", Timeout: 2 * time.Second}}
	start(t, cfg, f)
	web, sms := kafkatest.InboundTopic(cfg, "web"), kafkatest.InboundTopic(cfg, "sms")

	held := kafkaedge.HomePartition([]byte("ann"), 2)
	quiet, near := "", ""
	for i := 0; quiet == "" || near == ""; i++ {
		if c := fmt.Sprint("bob-", i); quiet == "" && kafkaedge.HomePartition([]byte(c), 2) != held {
			quiet = c
		}
		if c := fmt.Sprint("carl-", i); near == "" && kafkaedge.HomePartition([]byte(c), 2) == held {
			near = c
		}
	}
	quick := func(customer, text string) string {
		return strings.Replace(msg(customer, text), `"serviceIdentifier":"web"`, `"serviceIdentifier":"quick-sms"`, 1)
	}
	p := kafkatest.NewTxnProducer(t)
	// carl's session, on the sessions partition ann's held record goes to, begins just before the
	// transaction opens: its 2 s pass while it is open.
	kafkatest.KcatProducePartition(t, sms, held, quick(near, "just before the transaction"))
	p.Begin()
	p.Send(web, held, "ann", msg("ann", "in the open transaction"))
	kafkatest.KcatProducePartition(t, sms, 1-held, quick(quiet, "bye for now"))

	expiredOf := func(recs []kafkatest.KcatRecord, customer string) bool {
		for _, r := range recs {
			if r.Headers[inbound.HeaderEvent] == inbound.EventExpired && strings.Contains(r.Value, customer) {
				return true
			}
		}
		return false
	}
	all := func([]kafkatest.KcatRecord) bool { return true }
	expired := false
	for deadline := time.Now().Add(20 * time.Second); !expired && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		recs := kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, all)
		if expiredOf(recs, near) {
			t.Fatalf("%s's session expired while a transaction holding a record for its sessions partition was open", near)
		}
		expired = expiredOf(recs, quiet)
	}
	if !expired {
		t.Fatalf("channel B's quiet session did not expire within 20 s while channel A's transaction was open")
	}
	time.Sleep(3 * time.Second) // well past carl's idle timeout, with the watermark of bob's partition past it too
	if expiredOf(kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, all), near) {
		t.Fatalf("%s's session expired while a transaction holding a record for its sessions partition was open", near)
	}
	if _, ok := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 2))["in the open transaction"]; ok {
		t.Fatal("a message of a transaction still open reached the CCM")
	}
	p.Commit()
	kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, func(recs []kafkatest.KcatRecord) bool {
		_, ok := byText(t, toOuts(recs))["in the open transaction"]
		return ok && expiredOf(recs, near)
	})
}

package inbound_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkatest"
)

// account checks the contract's accounting: every input text appears on the CCM topic, duplicates are
// byte-identical, and each customer has exactly one session (no idle gaps or START_CHAT in these inputs).
// It returns the number of duplicates.
func account(t *testing.T, outs []out, customers, perCustomer int) int {
	t.Helper()
	seen := map[string]string{}
	sessions := map[string]map[string]bool{}
	dups := 0
	for _, o := range outs {
		if prev, ok := seen[o.text()]; ok {
			dups++
			if prev != o.Value {
				t.Errorf("duplicate of %s is not byte-identical", o.text())
			}
			continue
		}
		seen[o.text()] = o.Value
		h := o.msg["header"].(map[string]any)
		cust := h["channelData"].(map[string]any)["channelCustomerIdentifier"].(string)
		if sessions[cust] == nil {
			sessions[cust] = map[string]bool{}
		}
		sessions[cust][o.header("channelSessionId")+"/"+o.header("conversationId")] = true
	}
	lost := 0
	for c := 0; c < customers; c++ {
		for i := 0; i < perCustomer; i++ {
			if _, ok := seen[fmt.Sprintf("c%d-m%d", c, i)]; !ok {
				lost++
			}
		}
	}
	split := 0
	for cust, s := range sessions {
		if len(s) != 1 {
			split++
			t.Errorf("customer %s has %d sessions: %v", cust, len(s), s)
		}
	}
	t.Logf("in=%d out=%d lost=%d dup=%d customers_with_split_sessions=%d", customers*perCustomer, len(outs), lost, dups, split)
	if lost > 0 {
		t.Errorf("%d messages lost", lost)
	}
	return dups
}

// round produces message i of every customer, keyed or not.
func round(t *testing.T, topic string, keyed bool, customers, i int) {
	t.Helper()
	var lines []string
	for c := 0; c < customers; c++ {
		line := msg(fmt.Sprintf("cust-%d", c), fmt.Sprintf("c%d-m%d", c, i))
		if keyed {
			line = fmt.Sprintf("cust-%d\t%s", c, line)
		}
		lines = append(lines, line)
	}
	kcatProduce(t, topic, keyed, lines...)
}

func TestIntegrationRestartContinuesSessions(t *testing.T) {
	cfg, f := setup(t, 3, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	const customers, rounds = 10, 6
	first := start(t, cfg, f)
	for i := 0; i < rounds/2; i++ {
		round(t, topic, true, customers, i)
	}
	kcatConsume(t, cfg.Topics.CCMInbound, customers*rounds/2)
	first.stop(t)
	for i := rounds / 2; i < rounds; i++ { // produced while no instance runs
		round(t, topic, true, customers, i)
	}
	start(t, cfg, f)
	account(t, kcatConsumeUnique(t, cfg.Topics.CCMInbound, customers*rounds), customers, rounds)
}

func TestIntegrationTwoInstancesOneStopped(t *testing.T) {
	cfg, f := setup(t, 6, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	const customers, rounds = 20, 8
	a := start(t, cfg, f)
	start(t, cfg, f)
	for i := 0; i < rounds; i++ {
		round(t, topic, true, customers, i)
		if i == rounds/2 {
			a.stop(t) // mid-stream: its partitions move to the other instance
		}
		time.Sleep(100 * time.Millisecond)
	}
	account(t, kcatConsumeUnique(t, cfg.Topics.CCMInbound, customers*rounds), customers, rounds)
}

func TestIntegrationUnkeyedInputOneSessionPerCustomer(t *testing.T) {
	cfg, f := setup(t, 6, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	const customers, rounds = 20, 5
	start(t, cfg, f)
	for i := 0; i < rounds; i++ {
		// Unkeyed, each round on another partition (kcat's sticky partitioner alone may put several
		// rounds on one): every customer's records are spread over 5 of the 6 partitions.
		var lines []string
		for c := 0; c < customers; c++ {
			lines = append(lines, msg(fmt.Sprintf("cust-%d", c), fmt.Sprintf("c%d-m%d", c, i)))
		}
		kafkatest.KcatProducePartition(t, topic, i, lines...)
	}
	outs := kcatConsumeUnique(t, cfg.Topics.CCMInbound, customers*rounds)
	account(t, outs, customers, rounds)
	partitions := map[int]bool{}
	for _, o := range kcatConsume(t, topic, customers*rounds) {
		partitions[o.Partition] = true
	}
	if len(partitions) < 3 {
		t.Fatalf("input used only %d partitions; the test needs them spread", len(partitions))
	}
}

// TestIntegrationNewChannelTopicIsPickedUp: a topic matching the pattern, created while running, is
// consumed from its beginning without a restart.
func TestIntegrationNewChannelTopicIsPickedUp(t *testing.T) {
	cfg, f := setup(t, 1, "web")
	start(t, cfg, f)
	late := kafkatest.InboundTopic(cfg, "late")
	kafkatest.CreateTopic(t, late, 2)
	kcatProduce(t, late, true, "z\t"+msg("z", "late-1"))
	if outs := kcatConsume(t, cfg.Topics.CCMInbound, 1); outs[0].text() != "late-1" {
		t.Fatalf("got %q", outs[0].text())
	}
}

package inbound_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// restores records how an instance took up its sessions partitions.
type restores struct {
	mu   sync.Mutex
	list []restore
}

type restore struct {
	records int
	kept    bool
}

func (r *restores) observe(_ string, records int, _ time.Duration, kept bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, restore{records, kept})
}

func (r *restores) since(i int) []restore {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]restore(nil), r.list[i:]...)
}

// A second instance joins: kafka-go's eager rebalance revokes every partition, and the first instance
// gets half of them back. It keeps their tables and reads nothing of their changelog, where the second
// replays its half from the beginning; every customer's conversation continues across the rebalance.
func TestIntegrationRebalanceKeepsTheTablesOfPartitionsThatStay(t *testing.T) {
	cfg, f := setup(t, 4, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	var a, b restores
	startWith(t, cfg, f, inbound.Observers{Restored: a.observe})
	const customers = 40
	round := func(r int) {
		var lines []string
		for c := range customers {
			lines = append(lines, fmt.Sprintf("cust-%d\t%s", c, msg(fmt.Sprint("cust-", c), fmt.Sprintf("r%d-c%d", r, c))))
		}
		kcatProduce(t, topic, true, lines...)
	}
	round(1)
	kcatConsume(t, cfg.Topics.CCMInbound, customers)
	before := len(a.since(0))
	if before != 4 {
		t.Fatalf("the first instance took up %d partitions, want 4", before)
	}

	startWith(t, cfg, f, inbound.Observers{Restored: b.observe})
	round(2)
	ccm := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 2*customers))
	for c := range customers {
		first, second := ccm[fmt.Sprintf("r1-c%d", c)], ccm[fmt.Sprintf("r2-c%d", c)]
		if first.header("conversationId") == "" || first.header("conversationId") != second.header("conversationId") {
			t.Errorf("customer %d: the conversation did not continue across the rebalance: %q then %q", c, first.header("conversationId"), second.header("conversationId"))
		}
	}
	afterA, afterB := a.since(before), b.since(0)
	t.Logf("first instance after the join: %+v; second instance: %+v", afterA, afterB)
	keptA, replayedB := 0, 0
	for _, r := range afterA {
		if !r.kept || r.records != 0 {
			t.Errorf("the first instance must keep every partition it got back, reading nothing: %+v", r)
		}
		keptA++
	}
	for _, r := range afterB {
		if r.kept {
			t.Errorf("the second instance had nothing to keep: %+v", r)
		}
		replayedB += r.records
	}
	if keptA == 0 || len(afterB) == 0 || keptA+len(afterB) < 4 {
		t.Fatalf("partitions after the join: first kept %d, second took %d", keptA, len(afterB))
	}
	if replayedB == 0 {
		t.Error("the second instance's partitions had state to replay from the beginning")
	}
}

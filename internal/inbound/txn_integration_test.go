package inbound_test

import (
	"context"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkaclient"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
)

// A connector writing with the Java client's transactions (as Kafka Connect's exactly-once source
// connectors do), on a channel topic the fast path reads and on one that goes through the repartition
// topic: the committed messages reach the CCM, the aborted one never does, a transaction still open holds
// its message back until it commits, the commit and abort markers are not read as records (no dead
// letter), and the channel partition's committed offset moves past the last marker.
func TestIntegrationTransactionalConnectorReadCommitted(t *testing.T) {
	cfg, f := setup(t, 1, "web")
	fast := kafkatest.InboundTopic(cfg, "web")
	repart := kafkatest.InboundTopic(cfg, "sms")
	kafkatest.CreateTopic(t, repart, 2) // not co-partitioned with the repartition topic: stage 1 reads it
	start(t, cfg, f)

	p := kafkatest.NewTxnProducer(t)
	for _, topic := range []string{fast, repart} {
		p.Begin()
		p.Send(topic, 0, "ann", msg("ann", topic+"/committed-1"))
		p.Commit()
		p.Begin()
		p.Send(topic, 0, "ann", msg("ann", topic+"/aborted"))
		p.Abort()
		p.Begin()
		p.Send(topic, 0, "ann", msg("ann", topic+"/committed-2"))
		p.Commit()
	}
	p.Begin()
	p.Send(fast, 0, "ann", msg("ann", fast+"/open"))
	p.Send(repart, 0, "ann", msg("ann", repart+"/open"))

	ccm := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 4))
	for _, topic := range []string{fast, repart} {
		for _, text := range []string{"/committed-1", "/committed-2"} {
			if _, ok := ccm[topic+text]; !ok {
				t.Errorf("%s%s: a committed message must reach the CCM", topic, text)
			}
		}
	}
	time.Sleep(2 * time.Second) // what the open transaction would let through, if anything
	ccm = byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 4))
	for _, topic := range []string{fast, repart} {
		if _, ok := ccm[topic+"/open"]; ok {
			t.Errorf("%s: a message of a transaction still open reached the CCM", topic)
		}
	}

	p.Commit()
	ccm = byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 6))
	for _, topic := range []string{fast, repart} {
		if _, ok := ccm[topic+"/aborted"]; ok {
			t.Errorf("%s: the aborted message reached the CCM: %s", topic, ccm[topic+"/aborted"].Value)
		}
		if _, ok := ccm[topic+"/open"]; !ok {
			t.Errorf("%s: the message of the transaction committed last must reach the CCM", topic)
		}
	}
	if n := len(ccm); n != 6 {
		t.Errorf("%d distinct messages on the CCM topic, want 6: %v", n, keys(ccm))
	}

	// Each topic's partition 0: 4 records and 4 markers. Its committed offset (in whichever group reads
	// it) reaches the end, past the last commit marker.
	groups := []string{cfg.Kafka.Consumer.GroupID, cfg.Kafka.Consumer.GroupID + ".sessions"}
	for _, topic := range []string{fast, repart} {
		var at, end int64
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			at, end = committedOf(t, f, groups, topic)
			if (at == end && end == 8) || time.Now().After(deadline) {
				break
			}
		}
		if at != 8 || end != 8 {
			t.Errorf("%s/0: committed %d of end %d, want 8 of 8 (past the last commit marker)", topic, at, end)
		}
	}
	if dlq := kafkatest.KcatConsume(t, cfg.Topics.DeadLetter, func([]kafkatest.KcatRecord) bool { return true }); len(dlq) != 0 {
		for _, d := range dlq {
			t.Errorf("dead letter %q %q (%v): a marker or transactional record must not be dead-lettered", d.Key, d.Value, d.Headers)
		}
	}
}

// committedOf is the highest committed offset on partition 0 of topic among groups, and its end.
func committedOf(t *testing.T, f *kafkaclient.Factory, groups []string, topic string) (at, end int64) {
	t.Helper()
	for _, g := range groups {
		offs, err := kafkaedge.GroupOffsets(context.Background(), f, g, []string{topic})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offs {
			if o.Partition == 0 {
				at, end = max(at, o.Committed), o.End
			}
		}
	}
	return at, end
}

func keys(m map[string]out) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

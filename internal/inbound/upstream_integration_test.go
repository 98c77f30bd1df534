package inbound_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/session"
)

// A customer's next message is held upstream: a stalled member of the ingest group (it holds a partition
// and never processes it) sits on it while the wall clock runs three
// idle timeouts past the customer's last message. The session must not expire proactively: record time
// did not pass, however much other customers' live traffic flows meanwhile. Once the member leaves, the held message (one second after the first in record time)
// continues the conversation, and, caught up, the session then expires live.
func TestIntegrationHeldRecordsDoNotExpireTheirSession(t *testing.T) {
	cfg, f := setup(t, 2, "web")
	const idle = 3 * time.Second
	cfg.Inbound.SessionIdleTimeout = idle
	start(t, cfg, f)
	topic := kafkatest.InboundTopic(cfg, "web")

	// The fast path reads the channel topic (as many partitions as the repartition topic) in the
	// sessions group: the stalled member joins that one.
	held := kafkatest.StallMember(t, cfg.Kafka.Consumer.GroupID+".sessions", topic)
	if len(held.Partitions) != 1 {
		t.Fatalf("the stalled member must hold one of the two partitions: %v", held.Partitions)
	}
	kafkatest.KcatProducePartition(t, topic, 1-held.Partitions[0], msg("pat", "first"))
	kafkatest.KcatProducePartition(t, topic, held.Partitions[0], msg("pat", "held"))
	byText(t, kcatConsume(t, cfg.Topics.CCMInbound, 1))
	// Other customers stay live on the partition that is not held, on every repartition partition.
	sent := 1
	for end := time.Now().Add(3 * idle); time.Now().Before(end); sent += 6 {
		var lines []string
		for c := range 6 {
			lines = append(lines, msg(fmt.Sprint("other-", c), fmt.Sprint("live-", sent+c)))
		}
		kafkatest.KcatProducePartition(t, topic, 1-held.Partitions[0], lines...)
		time.Sleep(500 * time.Millisecond)
	}
	key := session.Key("web", "pat")
	if st := latestState(t, cfg.Topics.Sessions, key); st == nil || !st.Open {
		t.Fatalf("the session ended (or was forgotten: nil) while its next message was held upstream: %+v", st)
	}

	held.Leave()
	ccm := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, sent+1))
	if a, b := ccm["first"].header("conversationId"), ccm["held"].header("conversationId"); a == "" || a != b {
		t.Fatalf("the held message must continue the conversation: %q vs %q", a, b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := latestState(t, cfg.Topics.Sessions, key)
		if st != nil && !st.Open && st.Ended == session.ReasonIdle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caught up, the session must expire within seconds of its timeout: %+v", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// latestState reads the sessions changelog with kcat and returns key's latest state (nil when none or
// forgotten).
func latestState(t *testing.T, changelog, key string) *session.State {
	t.Helper()
	var st *session.State
	for _, r := range kafkatest.KcatConsume(t, changelog, func([]kafkatest.KcatRecord) bool { return true }) {
		if r.Key != key {
			continue
		}
		st = nil
		if r.Value != "" {
			st = new(session.State)
			if err := json.Unmarshal([]byte(r.Value), st); err != nil {
				t.Fatalf("changelog value %q: %v", r.Value, err)
			}
		}
	}
	return st
}

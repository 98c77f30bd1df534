package inbound_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/stream"
)

// fixedMsg is a message whose every field is set by the sender (id and timestamp included), so two runs
// of the pipeline give the same bytes.
func fixedMsg(customer, id string, ts int64, intent string) string {
	extra := ""
	if intent != "" {
		extra = `,"intent":"` + intent + `"`
	}
	return `{"id":"` + id + `","header":{"timestamp":` + fmt.Sprint(ts) + `,"sender":{"id":"web-1","type":"CONNECTOR","senderName":"WEB"},` +
		`"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"` + customer + `"}` + extra + `},` +
		`"body":{"type":"PLAIN","markdownText":"` + id + `"}}`
}

// ccmByKey is what the CCM read (kcat), per record key in order: value and headers but the source topic
// (each run has its own topic names).
func ccmByKey(recs []kafkatest.KcatRecord) map[string][]string {
	out := map[string][]string{}
	for _, r := range recs {
		hs := maps.Clone(r.Headers)
		delete(hs, stream.HeaderSourceTopic)
		keys := slices.Sorted(maps.Keys(hs))
		line := r.Value
		for _, k := range keys {
			line += "\n" + k + "=" + hs[k]
		}
		out[r.Key] = append(out[r.Key], line)
	}
	return out
}

// The same keyed input (each record on its customer's home partition, as a Java or kafka-go producer
// keying by channelCustomerIdentifier writes it) through the repartition topic and through the fast
// path gives the same CCM records byte for byte, events included; the fast path writes nothing to the
// repartition topic. Counted from outside with kcat.
func TestIntegrationFastPathOutputEqualsRepartitionPath(t *testing.T) {
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli() // within the topics' timestamp window
	var lines []string
	var msgs []kafka.Message
	for i := range 60 {
		c := fmt.Sprint("cust-", i%12)
		intent := ""
		switch i % 11 {
		case 4:
			intent = "START_CHAT"
		case 9:
			intent = "END_CHAT"
		}
		ts := base + int64(i)*1000
		lines = append(lines, fixedMsg(c, fmt.Sprint("m-", i), ts, intent))
		// The record time is session time: set, like the rest, so both runs see the same.
		msgs = append(msgs, kafka.Message{Key: []byte(c), Value: []byte(lines[i]), Time: time.UnixMilli(ts)})
	}
	var runs [2]map[string][]string
	total := 0
	for i, fast := range []bool{false, true} {
		cfg, f := setup(t, 3, "web")
		cfg.Inbound.FastPath = fast
		topic := kafkatest.InboundTopic(cfg, "web")
		start(t, cfg, f)
		w := f.Writer(topic) // Murmur2: each record on its customer's home partition
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		var recs []kafkatest.KcatRecord
		if !fast {
			kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeastMessages(len(lines)))
			time.Sleep(2 * time.Second) // the events written with the last messages
			recs = kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeast(0))
			total = len(recs)
		} else {
			recs = kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeast(total))
		}
		runs[i] = ccmByKey(recs)
		repartitioned := len(kafkatest.KcatConsume(t, cfg.Topics.Repartition, kafkatest.AtLeast(0)))
		if want := map[bool]int{false: len(lines), true: 0}[fast]; repartitioned != want {
			t.Fatalf("fast path %v: %d records on the repartition topic, want %d", fast, repartitioned, want)
		}
	}
	if total <= len(lines) {
		t.Fatalf("%d CCM records for %d messages: the session events are missing", total, len(lines))
	}
	if len(runs[0]) != len(runs[1]) {
		t.Fatalf("conversations: %d through the repartition topic, %d on the fast path", len(runs[0]), len(runs[1]))
	}
	for key, want := range runs[0] {
		if got := runs[1][key]; !slices.Equal(got, want) {
			t.Fatalf("conversation %s differs:\nrepartition path %q\nfast path        %q", key, want, got)
		}
	}
}

// A customer whose connector does not key its records (they land on every partition) has some taken
// where they are and the rest sent through the repartition topic; both meet in one session table, so
// live traffic keeps one conversation. Counted from outside: the repartition topic holds exactly the
// records that were not on the customer's home partition.
func TestIntegrationCustomerOnBothPathsKeepsOneSession(t *testing.T) {
	const partitions = 3
	cfg, f := setup(t, partitions, "web")
	topic := kafkatest.InboundTopic(cfg, "web")
	start(t, cfg, f)
	home := kafkaedge.HomePartition([]byte("ann"), partitions)
	const n = 9
	for i := range n {
		kafkatest.KcatProducePartition(t, topic, i%partitions, msg("ann", fmt.Sprint("t", i)))
		kcatConsume(t, cfg.Topics.CCMInbound, i+1) // live: each applied before the next is sent
	}
	outs := byText(t, kcatConsume(t, cfg.Topics.CCMInbound, n))
	conversations := map[string]bool{}
	for _, o := range outs {
		conversations[o.header("conversationId")] = true
	}
	if len(outs) != n || len(conversations) != 1 {
		t.Fatalf("%d messages in %d conversations, want %d in one", len(outs), len(conversations), n)
	}
	elsewhere := n - n/partitions // n is a multiple of partitions: n/partitions records on each
	if got := len(kafkatest.KcatConsume(t, cfg.Topics.Repartition, kafkatest.AtLeast(elsewhere))); got != elsewhere {
		t.Fatalf("%d records on the repartition topic, want the %d not on partition %d", got, elsewhere, home)
	}
}

package inbound_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cimstream/cimstream/internal/inbound"
	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/kafkatest"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

// A backlog of 600 messages of 6 customers, there before cimstream starts (so batches are large),
// through the fast path (keyed) and through the repartition topic (fast path off): the changelog gets
// far fewer records than there are messages (one state per key and batch), counted from outside with
// kcat, and the CCM records are byte for byte those of the messages processed one by one.
func TestIntegrationBacklogWritesFewChangelogRecords(t *testing.T) {
	const partitions, messages, customers = 3, 600, 6
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	var msgs []kafka.Message
	for i := range messages {
		c := fmt.Sprint("cust-", i%customers)
		intent := ""
		switch i % 97 {
		case 11:
			intent = "START_CHAT"
		case 50:
			intent = "END_CHAT"
		}
		ts := base + int64(i)*1000
		msgs = append(msgs, kafka.Message{Key: []byte(c), Value: []byte(fixedMsg(c, fmt.Sprint("m-", i), ts, intent)), Time: time.UnixMilli(ts)})
	}
	want := oneByOne(t, msgs, partitions)
	for _, fast := range []bool{true, false} {
		t.Run(map[bool]string{true: "fast path", false: "repartition"}[fast], func(t *testing.T) {
			cfg, f := setup(t, partitions, "web")
			cfg.Inbound.FastPath = fast
			w := f.Writer(kafkatest.InboundTopic(cfg, "web")) // Murmur2: each record on its customer's home partition
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				t.Fatal(err)
			}
			_ = w.Close()
			start(t, cfg, f)
			total := 0
			for _, vs := range want {
				total += len(vs)
			}
			got := map[string][]string{}
			for _, r := range kafkatest.KcatConsume(t, cfg.Topics.CCMInbound, kafkatest.AtLeast(total)) {
				got[r.Key] = append(got[r.Key], r.Value)
			}
			for key, vs := range want {
				if !slices.Equal(got[key], vs) {
					t.Fatalf("conversation %s: CCM records\n%q\nwant (one by one)\n%q", key, got[key], vs)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d conversations on the CCM topic, want %d", len(got), len(want))
			}
			changelog := len(kafkatest.KcatConsume(t, cfg.Topics.Sessions, kafkatest.AtLeast(customers)))
			t.Logf("%d messages, %d customers: %d changelog records (one by one: %d)", messages, customers, changelog, messages)
			if changelog > messages/10 {
				t.Errorf("%d changelog records for a backlog of %d messages of %d customers, want at most %d", changelog, messages, customers, messages/10)
			}
		})
	}
}

// oneByOne is what the CCM topic gets of msgs when each record is processed alone, as before
// coalescing: the values per record key, in order. Session decisions depend on the key's own records
// (with trusted record times), so one table stands for every partition's.
func oneByOne(t *testing.T, msgs []kafka.Message, partitions int) map[string][]string {
	t.Helper()
	topics := inbound.Topics{Repartition: "rep", CCM: "ccm", Notifications: "notes"}
	n := inbound.NewNormalizer(topics, 1<<20, nil)
	e := inbound.NewEnricher(topics, "sessions", 0, session.Fixed(30*time.Minute), nil, nil).WithEvents("ccm")
	offsets := map[int]int64{}
	out := map[string][]string{}
	for _, m := range msgs {
		p := kafkaedge.HomePartition(m.Key, partitions)
		res := n.Process(stream.Record{Topic: "cim.inbound.web", Partition: p, Offset: offsets[p], Key: m.Key, Value: m.Value, Time: m.Time})
		offsets[p]++
		o := res.Outputs[0]
		for _, c := range e.Process(stream.Record{Topic: "rep", Partition: p, Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time}).Outputs {
			if c.Topic == "ccm" {
				out[string(c.Key)] = append(out[string(c.Key)], string(c.Value))
			}
		}
	}
	return out
}

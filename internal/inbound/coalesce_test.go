package inbound

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cimstream/cimstream/internal/kafkaedge"
	"github.com/cimstream/cimstream/internal/session"
	"github.com/cimstream/cimstream/internal/stream"
)

// coalesceInput is a batch of one channel partition for three customers, each with several records:
// messages, a START_CHAT and an END_CHAT, a NOTIFICATION, a replay of an earlier record, and invalid
// records; every record sits on partition 0 whatever its customer (the repartition path's view).
func coalesceInput() []stream.Record {
	base := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var recs []stream.Record
	add := func(customer, value string) {
		recs = append(recs, stream.Record{Topic: "cim.inbound.web", Offset: int64(len(recs)), Key: []byte(customer),
			Value: []byte(value), Time: base.Add(time.Duration(len(recs)) * 10 * time.Second)})
	}
	for i := range 30 {
		c := fmt.Sprint("cust-", i%3)
		switch i % 10 {
		case 2:
			add(c, text(c, fmt.Sprint("m", i), `,"intent":"START_CHAT"`))
		case 6:
			add(c, text(c, fmt.Sprint("m", i), `,"intent":"END_CHAT"`))
		case 7:
			add(c, `{"header":{"sender":{"id":"w","type":"CONNECTOR","senderName":"W"},"channelData":{"serviceIdentifier":"web","channelCustomerIdentifier":"`+c+
				`"}},"body":{"type":"NOTIFICATION","notificationType":"TYPING"}}`)
		case 8:
			add(c, `{"header":{"sender":{"id":"w"}},"body":{"type":"PLAIN"}}`) // invalid
		default:
			add(c, text(c, fmt.Sprint("m", i), ""))
		}
	}
	return recs
}

// repartitioned is what stage 1 writes of recs, read back from repartition partition 0; a record
// stage 1 rejects becomes a record the sessions stage rejects too (not a CIM message).
func repartitionedBatch(t *testing.T, recs []stream.Record) []stream.Record {
	t.Helper()
	n := NewNormalizer(testTopics, 1<<20, nil)
	var out []stream.Record
	for i, rec := range recs {
		res := n.Process(rec)
		o := stream.Output{Key: rec.Key, Value: []byte("not json"), Time: rec.Time}
		if len(res.Reject) == 0 {
			o = res.Outputs[0]
		}
		out = append(out, stream.Record{Topic: testTopics.Repartition, Offset: int64(i), Key: o.Key, Value: o.Value, Headers: o.Headers, Time: o.Time})
	}
	return out
}

func coalesceEnricher(clk *clock) *Enricher {
	return NewEnricher(testTopics, "sessions", 0, session.Fixed(2*time.Minute), nil, clk.Now).WithEvents(testTopics.CCM)
}

// changelogOf splits results into the changelog records and every other output, in order.
func changelogOf(results []stream.Result) (changelog, others []stream.Output) {
	for _, r := range results {
		for _, o := range r.Outputs {
			if o.Topic == "sessions" {
				changelog = append(changelog, o)
			} else {
				others = append(others, o)
			}
		}
	}
	return changelog, others
}

// tableOf restores a table from changelog records and lists each key's state as encoded.
func tableOf(t *testing.T, clk *clock, changelog []stream.Output) map[string]string {
	t.Helper()
	e := coalesceEnricher(clk)
	for _, o := range changelog {
		if err := e.Restore(o.Key, o.Value); err != nil {
			t.Fatal(err)
		}
	}
	e.Restored()
	out := map[string]string{}
	for _, k := range []string{session.Key("web", "cust-0"), session.Key("web", "cust-1"), session.Key("web", "cust-2")} {
		if st := e.table.Get(k); st != nil {
			out[k] = string(session.Encode(st))
		}
	}
	return out
}

// A batch writes one changelog record per key, the last state the batch decided for it, and nothing
// else changes: the CCM records, events and rejections are those of the records processed one by
// one, in the same order, and a restore from the coalesced records gives the same table as a restore
// from all of them.
func TestSessionsBatchWritesOneChangelogStatePerKey(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	batch := repartitionedBatch(t, coalesceInput())
	// A replay of the first record at the end: its key's last state is the one before it.
	batch = append(batch, batch[0])

	one := coalesceEnricher(clk)
	var each []stream.Result
	for _, rec := range batch {
		each = append(each, one.Process(rec))
	}
	h := &repartitionHandler{slotUser{s: &slot{e: coalesceEnricher(clk), appliedFrom: map[string]int64{}, progress: make(chan struct{})},
		p: &Pipeline{log: zap.NewNop()}}}
	got := h.Process(batch)

	all, eachOthers := changelogOf(each)
	coalesced, gotOthers := changelogOf(got)
	if len(all) < 2*3 {
		t.Fatalf("the input should write several states per key: %d", len(all))
	}
	keys := map[string]int{}
	for _, o := range coalesced {
		keys[string(o.Key)]++
	}
	if len(coalesced) != 3 || len(keys) != 3 {
		t.Fatalf("batch of %d records wrote %d changelog records for %d keys, want one per key (3); one by one: %d",
			len(batch), len(coalesced), len(keys), len(all))
	}
	// Each kept record is the last one the records processed one by one wrote for its key.
	for _, o := range coalesced {
		var last stream.Output
		for _, a := range all {
			if bytes.Equal(a.Key, o.Key) {
				last = a
			}
		}
		if !bytes.Equal(o.Value, last.Value) {
			t.Errorf("key %q: kept\n%s\nwant the last state\n%s", o.Key, o.Value, last.Value)
		}
	}
	if len(gotOthers) != len(eachOthers) {
		t.Fatalf("other outputs: %d, one by one %d", len(gotOthers), len(eachOthers))
	}
	for i := range gotOthers {
		a, b := gotOthers[i], eachOthers[i]
		if a.Topic != b.Topic || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || !a.Time.Equal(b.Time) {
			t.Fatalf("output %d differs:\n%s %s\n%s %s", i, a.Topic, a.Value, b.Topic, b.Value)
		}
	}
	for i := range got {
		if !slices.Equal(got[i].Reject.Codes(), each[i].Reject.Codes()) {
			t.Errorf("record %d: rejected %v, one by one %v", i, got[i].Reject.Codes(), each[i].Reject.Codes())
		}
	}
	from, fromAll := tableOf(t, clk, coalesced), tableOf(t, clk, all)
	if len(from) != 3 || fmt.Sprint(from) != fmt.Sprint(fromAll) {
		t.Errorf("restored from the coalesced records:\n%v\nfrom all of them:\n%v", from, fromAll)
	}
}

// An input the sessions stage rejects writes nothing: the state its key had before it is the one kept.
// Only the batch's own outputs are coalesced: a second batch writes its keys' states again.
func TestRejectedInputKeepsTheEarlierState(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	good := repartitionedBatch(t, []stream.Record{{Topic: "cim.inbound.web", Key: []byte("cust-0"), Value: []byte(text("cust-0", "hi", "")),
		Time: clk.now.Add(-time.Minute)}})[0]
	bad := stream.Record{Topic: testTopics.Repartition, Offset: 1, Key: good.Key, Value: []byte("not json"), Time: good.Time}
	h := &repartitionHandler{slotUser{s: &slot{e: coalesceEnricher(clk), appliedFrom: map[string]int64{}, progress: make(chan struct{})},
		p: &Pipeline{log: zap.NewNop()}}}
	got := h.Process([]stream.Record{good, bad})
	changelog, _ := changelogOf(got)
	if len(got[1].Reject) == 0 || len(got[1].Outputs) != 0 {
		t.Fatalf("the undecodable record: %+v", got[1])
	}
	if len(changelog) != 1 || !bytes.Equal(changelog[0].Key, good.Key) {
		t.Fatalf("changelog records %d, want the first record's state", len(changelog))
	}
	next := stream.Record{Topic: "cim.inbound.web", Offset: 9, Key: []byte("cust-0"), Value: []byte(text("cust-0", "again", "")), Time: clk.now}
	again, _ := changelogOf(h.Process(repartitionedBatch(t, []stream.Record{next})))
	if len(again) != 1 {
		t.Fatalf("the next batch wrote %d changelog records for its key, want 1", len(again))
	}
}

// The fast path's channel handler coalesces the states of the records it takes where they are, and
// leaves the records it sends through the repartition topic as they are.
func TestHomeBatchWritesOneChangelogStatePerKey(t *testing.T) {
	clk := &clock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	const partitions = 4
	var batch []stream.Record
	base := clk.now.Add(-time.Hour)
	home := kafkaedge.HomePartition([]byte("cust-0"), partitions)
	other := "cust-1"
	for i := 2; kafkaedge.HomePartition([]byte(other), partitions) == home; i++ {
		other = fmt.Sprint("cust-", i)
	}
	for i := range 12 {
		c := "cust-0"
		if i%4 == 3 {
			c = other // not on its home partition: through the repartition topic
		}
		batch = append(batch, stream.Record{Topic: "cim.inbound.web", Partition: home, Offset: int64(i), Key: []byte(c),
			Value: []byte(text(c, fmt.Sprint("m", i), "")), Time: base.Add(time.Duration(i) * time.Second)})
	}
	s := newSlot()
	s.e = coalesceEnricher(clk)
	h := &homeHandler{slotUser: slotUser{p: &Pipeline{home: kafkaedge.HomePartition, log: zap.NewNop()}, s: s, partition: home},
		n: NewNormalizer(testTopics, 1<<20, nil), partitions: partitions, repartition: testTopics.Repartition, fast: true}
	got := h.Process(batch)
	changelog, others := changelogOf(got)
	if len(changelog) != 1 || string(changelog[0].Key) != session.Key("web", "cust-0") {
		t.Fatalf("changelog records %d, want one (cust-0's)", len(changelog))
	}
	if st := decodeState(t, changelog[0].Value); st.Applied[0] != 10 {
		t.Errorf("kept state applied up to %v, want the last record's offset (10)", st.Applied)
	}
	ccm, rep := 0, 0
	for _, o := range others {
		switch o.Topic {
		case testTopics.CCM:
			ccm++
		case testTopics.Repartition:
			rep++
		}
	}
	if rep != 3 || ccm < 9 {
		t.Errorf("repartition records %d (want 3), CCM records %d (want at least 9)", rep, ccm)
	}
}
